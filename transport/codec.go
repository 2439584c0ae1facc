package transport

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/apache/thrift/lib/go/thrift"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// ClientCodec encodes `call` and `execute` requests into frames and decodes
// their reply frames, for a client that does its own socket I/O (dialkv
// bench's event loop drives many connections from one goroutine, so it
// cannot use Conn's blocking calls). The encoding is Conn's exactly: same
// protocols, same framing (a 4-byte big-endian length, then the message).
// Not safe for concurrent use.
type ClientCodec struct {
	w      replyWriter // the request being encoded
	r      frameReader // the reply being decoded
	oprot  thrift.TProtocol
	iprot  thrift.TProtocol
	std    *thrift.TStandardClient
	maxLen int
	binary bool // the binary protocol: execute's fast paths (execbinary.go)
	call   gen.DialKVCallArgs
	exec   gen.DialKVExecuteArgs
}

// NewClientCodec returns a codec for protocol p (binary if empty) and the
// largest frame maxFrame (DefaultMaxFrame if not positive).
func NewClientCodec(p Protocol, maxFrame int) *ClientCodec {
	if p == "" {
		p = Binary
	}
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	cfg := &thrift.TConfiguration{MaxMessageSize: int32(maxFrame), MaxFrameSize: int32(maxFrame)}
	c := &ClientCodec{maxLen: maxFrame, binary: p == Binary}
	c.oprot = p.newProtocol(&c.w, cfg)
	c.iprot = p.newProtocol(&c.r, cfg)
	c.std = thrift.NewTStandardClient(c.iprot, c.oprot)
	return c
}

// AppendCall appends to dst the frame of a `call` request with sequence
// number seq.
func (c *ClientCodec) AppendCall(dst []byte, seq int32, opts *gen.RequestOptions, cmd *gen.Command) ([]byte, error) {
	c.call = gen.DialKVCallArgs{Opts: opts, Cmd: cmd}
	out, err := c.appendFrame(dst, seq, "call", &c.call)
	c.call = gen.DialKVCallArgs{} // keep no reference to the caller's command
	return out, err
}

// AppendExecute appends to dst the frame of an `execute` request (a batch)
// with sequence number seq.
func (c *ClientCodec) AppendExecute(dst []byte, seq int32, opts *gen.RequestOptions, cmds []*gen.Command) ([]byte, error) {
	if c.binary {
		// The generated writer's bytes, appended directly (execbinary.go).
		out, err := c.appendExecuteBinary(append(dst, 0, 0, 0, 0), seq, opts, cmds)
		if err != nil {
			return dst, fmt.Errorf("transport: encode execute: %w", err)
		}
		return c.finishFrame(dst, out)
	}
	c.exec = gen.DialKVExecuteArgs{Opts: opts, Cmds: cmds}
	out, err := c.appendFrame(dst, seq, "execute", &c.exec)
	c.exec = gen.DialKVExecuteArgs{}
	return out, err
}

func (c *ClientCodec) appendFrame(dst []byte, seq int32, method string, args thrift.TStruct) ([]byte, error) {
	c.w.b = append(dst, 0, 0, 0, 0)
	err := c.std.Send(context.Background(), c.oprot, seq, method, args)
	out := c.w.b
	c.w.b = nil
	if err != nil {
		return dst, fmt.Errorf("transport: encode %s: %w", method, err)
	}
	return c.finishFrame(dst, out)
}

// finishFrame fills in the 4-byte header of the frame that out holds after
// dst, or returns dst and an error if the frame is over the maximum.
func (c *ClientCodec) finishFrame(dst, out []byte) ([]byte, error) {
	start := len(dst)
	size := len(out) - start - 4
	if size > c.maxLen {
		return dst, fmt.Errorf("transport: request frame of %d bytes is over the maximum %d", size, c.maxLen)
	}
	binary.BigEndian.PutUint32(out[start:], uint32(size))
	return out, nil
}

// FrameLen returns the length of the first frame of b (its 4-byte header
// included) once b holds all of it; 0 if b holds only part of a frame, and
// an error if the header announces a frame larger than the codec's maximum
// (or an empty one).
func (c *ClientCodec) FrameLen(b []byte) (int, error) {
	if len(b) < 4 {
		return 0, nil
	}
	n := binary.BigEndian.Uint32(b)
	if n == 0 || n > uint32(c.maxLen) {
		return 0, fmt.Errorf("transport: reply frame of %d bytes is not in 1..%d", n, c.maxLen)
	}
	if uint32(len(b)-4) < n {
		return 0, nil
	}
	return 4 + int(n), nil
}

// DecodeCall decodes the reply frame (without its 4-byte header) to the
// `call` request seq. Errors are Conn.Call's: the IDL's typed exceptions
// (the node answered), a Thrift application exception, or a decoding
// error. The response refers to nothing in frame.
func (c *ClientCodec) DecodeCall(frame []byte, seq int32) (*gen.ExecuteResponse, error) {
	var res gen.DialKVCallResult
	if err := c.recv(frame, seq, "call", &res); err != nil {
		return nil, err
	}
	switch {
	case res.WrongType != nil:
		return nil, res.WrongType
	case res.ConditionFailed != nil:
		return nil, res.ConditionFailed
	case res.TooLarge != nil:
		return nil, res.TooLarge
	case res.Invalid != nil:
		return nil, res.Invalid
	case res.Unavailable != nil:
		return nil, res.Unavailable
	case res.Timeout != nil:
		return nil, res.Timeout
	case res.Corruption != nil:
		return nil, res.Corruption
	case res.NotLeader != nil:
		return nil, res.NotLeader
	case res.Unauthenticated != nil:
		return nil, res.Unauthenticated
	case res.Forbidden != nil:
		return nil, res.Forbidden
	}
	if r := res.GetSuccess(); r != nil {
		return r, nil
	}
	return nil, thrift.NewTApplicationException(thrift.MISSING_RESULT, "call failed: unknown result")
}

// DecodeExecute decodes the reply frame (without its 4-byte header) to the
// `execute` request seq; errors as DecodeCall's.
func (c *ClientCodec) DecodeExecute(frame []byte, seq int32) (*gen.ExecuteResponse, error) {
	var res gen.DialKVExecuteResult
	if err := c.recv(frame, seq, "execute", &res); err != nil {
		return nil, err
	}
	switch {
	case res.Invalid != nil:
		return nil, res.Invalid
	case res.Unavailable != nil:
		return nil, res.Unavailable
	case res.Timeout != nil:
		return nil, res.Timeout
	case res.NotLeader != nil:
		return nil, res.NotLeader
	case res.Unauthenticated != nil:
		return nil, res.Unauthenticated
	case res.Forbidden != nil:
		return nil, res.Forbidden
	}
	if r := res.GetSuccess(); r != nil {
		return r, nil
	}
	return nil, thrift.NewTApplicationException(thrift.MISSING_RESULT, "execute failed: unknown result")
}

func (c *ClientCodec) recv(frame []byte, seq int32, method string, res thrift.TStruct) error {
	c.r.reset(frame)
	err := c.std.Recv(context.Background(), c.iprot, seq, method, res)
	c.r.reset(nil)
	if err != nil {
		return fmt.Errorf("transport: %s reply: %w", method, err)
	}
	return nil
}
