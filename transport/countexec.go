package transport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/apache/thrift/lib/go/thrift"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// CountExecute is DecodeExecute for a caller that only needs to know how
// many replies came and how many of them are errors (dialkv bench, which
// shares the machine's cores with the node it measures): it walks the
// reply frame (without its 4-byte header) in place and builds nothing —
// no ExecuteResponse, no Reply per command, no copy of a value — where
// DecodeExecute allocates a Reply and copies its value for every command.
// The frame is checked as DecodeExecute checks it (message name, type and
// sequence number, every field's wire type and length, a kind in every
// reply, the replies present); a frame that answers with an exception is
// decoded by DecodeExecute, so errors are DecodeExecute's.
func (c *ClientCodec) CountExecute(frame []byte, seq int32) (replies, failed int, err error) {
	var res executeCount
	if err := c.recv(frame, seq, "execute", &res); err != nil {
		return 0, 0, err
	}
	if res.exception || !res.success {
		// An exception (or no result at all): rare, decoded whole, so
		// that the answer is DecodeExecute's (its typed error).
		resp, err := c.DecodeExecute(frame, seq)
		if err != nil {
			return 0, 0, err
		}
		for _, r := range resp.Replies {
			if r.Kind == gen.ReplyKind_ERROR {
				failed++
			}
		}
		return len(resp.Replies), failed, nil
	}
	return res.replies, res.failed, nil
}

// executeCount is a DialKVExecuteResult read by counting: the replies of
// its success and the error replies among them.
type executeCount struct {
	success, exception bool
	replies, failed    int
}

var _ thrift.TStruct = (*executeCount)(nil)

// errCountWrite is executeCount's Write: it is only ever read.
var errCountWrite = errors.New("transport: a counted execute result is not written")

// Write is not supported: a counted result is only read.
func (r *executeCount) Write(context.Context, thrift.TProtocol) error { return errCountWrite }

// Read walks a DialKVExecuteResult: field 0 is the ExecuteResponse,
// fields 4, 5, 6, 8, 9 and 10 the exceptions (noted, then skipped),
// anything else skipped as the generated reader skips it.
func (r *executeCount) Read(ctx context.Context, p thrift.TProtocol) error {
	return readStruct(ctx, p, "DialKVExecuteResult", func(id int16, typ thrift.TType) (bool, error) {
		switch {
		case id == 0 && typ == thrift.STRUCT:
			r.success = true
			return true, r.readResponse(ctx, p)
		case id >= 4 && id <= 10 && id != 7 && typ == thrift.STRUCT:
			r.exception = true
		}
		return false, nil
	})
}

// readResponse walks an ExecuteResponse, counting its replies.
func (r *executeCount) readResponse(ctx context.Context, p thrift.TProtocol) error {
	seen := false
	err := readStruct(ctx, p, "ExecuteResponse", func(id int16, typ thrift.TType) (bool, error) {
		switch {
		case id == 1 && typ == thrift.LIST:
			seen = true
			return true, r.readReplies(ctx, p)
		case typ == thrift.STRING:
			return true, skipBinary(ctx, p) // token, served_by
		}
		return false, nil
	})
	if err == nil && !seen {
		err = thrift.NewTProtocolExceptionWithType(thrift.INVALID_DATA, errors.New("Required field Replies is not set"))
	}
	return err
}

// readReplies walks list<Reply>.
func (r *executeCount) readReplies(ctx context.Context, p thrift.TProtocol) error {
	// As the generated reader: the elements are read as structs whatever
	// type the header claims, and a second list replaces the first.
	_, size, err := p.ReadListBegin(ctx)
	if err != nil {
		return thrift.PrependError("error reading list begin: ", err)
	}
	r.replies, r.failed = 0, 0
	for range size {
		kind, err := readReplyKind(ctx, p)
		if err != nil {
			return err
		}
		r.replies++
		if kind == gen.ReplyKind_ERROR {
			r.failed++
		}
	}
	if err := p.ReadListEnd(ctx); err != nil {
		return thrift.PrependError("error reading list end: ", err)
	}
	return nil
}

// readReplyKind walks a Reply and returns its kind (required); its value
// is skipped in place.
func readReplyKind(ctx context.Context, p thrift.TProtocol) (gen.ReplyKind, error) {
	var (
		kind gen.ReplyKind
		seen bool
	)
	err := readStruct(ctx, p, "Reply", func(id int16, typ thrift.TType) (bool, error) {
		switch {
		case id == 1 && typ == thrift.I32:
			v, err := p.ReadI32(ctx)
			if err != nil {
				return true, thrift.PrependError("error reading field 1: ", err)
			}
			kind, seen = gen.ReplyKind(v), true
			return true, nil
		case typ == thrift.STRING:
			return true, skipBinary(ctx, p) // str
		}
		return false, nil
	})
	if err == nil && !seen {
		err = thrift.NewTProtocolExceptionWithType(thrift.INVALID_DATA, errors.New("Required field Kind is not set"))
	}
	return kind, err
}

// readStruct reads a struct's fields, giving each to field, which reports
// whether it read the field's value; a field it did not read is skipped
// (as the generated readers skip a field they do not know).
func readStruct(ctx context.Context, p thrift.TProtocol, name string, field func(id int16, typ thrift.TType) (bool, error)) error {
	if _, err := p.ReadStructBegin(ctx); err != nil {
		return thrift.PrependError(name+" read error: ", err)
	}
	for {
		_, typ, id, err := p.ReadFieldBegin(ctx)
		if err != nil {
			return thrift.PrependError(fmt.Sprintf("%s field %d read error: ", name, id), err)
		}
		if typ == thrift.STOP {
			break
		}
		done, err := field(id, typ)
		if err == nil && !done {
			err = p.Skip(ctx, typ)
		}
		if err != nil {
			return err
		}
		if err := p.ReadFieldEnd(ctx); err != nil {
			return err
		}
	}
	if err := p.ReadStructEnd(ctx); err != nil {
		return thrift.PrependError(name+" read struct end error: ", err)
	}
	return nil
}

// skipBinary skips a binary field's value: in place on a frame held in
// memory (the protocols of this package over a frame reader), read and
// dropped otherwise.
func skipBinary(ctx context.Context, p thrift.TProtocol) error {
	var (
		size int64
		fr   inPlaceReader
		cfg  *thrift.TConfiguration
	)
	switch bp := p.(type) {
	case *binaryProtocol:
		if bp.fr == nil {
			break
		}
		n, err := bp.ReadI32(ctx)
		if err != nil {
			return err
		}
		size, fr, cfg = int64(n), bp.fr, bp.cfg
	case *compactProtocol:
		if bp.fr == nil || bp.br == nil {
			break
		}
		n, err := bp.readLength()
		if err != nil {
			return err
		}
		size, fr, cfg = int64(n), bp.fr, bp.cfg
	}
	if fr == nil {
		_, err := p.ReadBinary(ctx)
		return err
	}
	// The checks of readExact, without the copy.
	switch {
	case size < 0:
		return thrift.NewTProtocolExceptionWithType(thrift.NEGATIVE_SIZE, fmt.Errorf("negative size: %d", size))
	case size > int64(cfg.GetMaxMessageSize()):
		return thrift.NewTProtocolExceptionWithType(thrift.SIZE_LIMIT, fmt.Errorf("size exceeded max allowed: %d", size))
	case uint64(size) > fr.RemainingBytes():
		return thrift.NewTProtocolException(fmt.Errorf("binary field of %d bytes but %d left in the frame: %w", size, fr.RemainingBytes(), io.ErrUnexpectedEOF))
	}
	fr.consume(int(size))
	return nil
}
