package transport

import (
	"context"
	"fmt"
	"io"
	"math"

	"github.com/apache/thrift/lib/go/thrift"
)

// The Thrift library reads every binary field through a bytes.Buffer that
// grows to at least 512 bytes (io.CopyN into a Buffer), so a request or
// reply costs two or three allocations of 512+ bytes per argument or value
// whatever its size — most of the bytes a small request allocates. It does
// so because it cannot trust the claimed length. Our transports know how
// many bytes the frame still holds (the server decodes from memory, the
// client from a whole frame), so the protocols below check the length
// against that and allocate exactly once. On a transport that cannot say
// (RemainingBytes is MaxUint64) they fall back to the library's reader.

// inPlaceReader is a transport that holds a whole frame in memory (the
// server's frameReader, a client's clientFramed): strings are decoded from
// it in place.
type inPlaceReader interface {
	peek(n int) ([]byte, bool)
	consume(n int)
	RemainingBytes() uint64
}

var (
	_ inPlaceReader = (*frameReader)(nil)
	_ inPlaceReader = (*clientFramed)(nil)
)

// binaryProtocol is TBinaryProtocol with an exact-size ReadBinary.
type binaryProtocol struct {
	*thrift.TBinaryProtocol
	t   thrift.TTransport
	fr  inPlaceReader // t, if it decodes frames in place
	cfg *thrift.TConfiguration
}

// compactProtocol is TCompactProtocol with an exact-size ReadBinary.
type compactProtocol struct {
	*thrift.TCompactProtocol
	t   thrift.TTransport
	br  io.ByteReader
	fr  inPlaceReader // t, if it decodes frames in place
	cfg *thrift.TConfiguration
}

var (
	_ thrift.TProtocol = (*binaryProtocol)(nil)
	_ thrift.TProtocol = (*compactProtocol)(nil)
)

func (p Protocol) newProtocol(t thrift.TTransport, cfg *thrift.TConfiguration) thrift.TProtocol {
	if p == Compact {
		cp := &compactProtocol{TCompactProtocol: thrift.NewTCompactProtocolConf(t, cfg), t: t, cfg: cfg}
		if br, ok := t.(io.ByteReader); ok {
			cp.br = br
		}
		cp.fr, _ = t.(inPlaceReader)
		return cp
	}
	bp := &binaryProtocol{TBinaryProtocol: thrift.NewTBinaryProtocolConf(t, cfg), t: t, cfg: cfg}
	bp.fr, _ = t.(inPlaceReader)
	return bp
}

// ReadMessageBegin is the library's, except that on the server's frame
// reader the method name costs no allocation (internString).
func (p *binaryProtocol) ReadMessageBegin(ctx context.Context) (name string, typeID thrift.TMessageType, seqID int32, err error) {
	if p.fr == nil {
		return p.TBinaryProtocol.ReadMessageBegin(ctx)
	}
	size, err := p.ReadI32(ctx)
	if err != nil {
		return "", 0, 0, thrift.NewTProtocolException(err)
	}
	if size >= 0 {
		// The old unversioned header: the name's length comes first.
		if p.cfg.GetTBinaryStrictRead() {
			return "", 0, 0, thrift.NewTProtocolExceptionWithType(thrift.BAD_VERSION, fmt.Errorf("missing version in ReadMessageBegin"))
		}
		if name, err = p.readName(size); err != nil {
			return "", 0, 0, err
		}
		b, err := p.ReadByte(ctx)
		if err != nil {
			return "", 0, 0, err
		}
		typeID = thrift.TMessageType(b)
	} else {
		typeID = thrift.TMessageType(size & 0x0ff)
		if int64(size)&thrift.VERSION_MASK != thrift.VERSION_1 {
			return "", typeID, 0, thrift.NewTProtocolExceptionWithType(thrift.BAD_VERSION, fmt.Errorf("bad version in ReadMessageBegin"))
		}
		if name, err = p.ReadString(ctx); err != nil {
			return "", typeID, 0, err
		}
	}
	if seqID, err = p.ReadI32(ctx); err != nil {
		return name, typeID, 0, thrift.NewTProtocolException(err)
	}
	return name, typeID, seqID, nil
}

// ReadString reads a string; on the server's frame reader a method or
// command name costs no allocation (internString).
func (p *binaryProtocol) ReadString(ctx context.Context) (string, error) {
	if p.fr == nil {
		return p.TBinaryProtocol.ReadString(ctx)
	}
	size, err := p.ReadI32(ctx)
	if err != nil {
		return "", err
	}
	return p.readName(size)
}

// readName reads a string body of size bytes from the frame reader.
func (p *binaryProtocol) readName(size int32) (string, error) {
	return frameString(p.fr, int64(size), p.cfg)
}

// ReadString reads a string; on the server's frame reader a method or
// command name costs no allocation (internString).
func (p *compactProtocol) ReadString(ctx context.Context) (string, error) {
	if p.fr == nil {
		return p.TCompactProtocol.ReadString(ctx)
	}
	size, err := p.readLength()
	if err != nil {
		return "", err
	}
	return frameString(p.fr, int64(size), p.cfg)
}

// frameString reads a string of size bytes in place from fr.
func frameString(fr inPlaceReader, size int64, cfg *thrift.TConfiguration) (string, error) {
	if err := checkLength(size, fr.RemainingBytes(), cfg, "string"); err != nil {
		return "", err
	}
	b, ok := fr.peek(int(size))
	if !ok {
		// Not after checkLength: peek fails only past RemainingBytes.
		return "", thrift.NewTProtocolException(fmt.Errorf("string of %d bytes: %w", size, io.ErrUnexpectedEOF))
	}
	fr.consume(int(size))
	return internString(b), nil
}

// checkLength checks the length prefix of a string or binary (what, for
// the error) before it is read: not negative, within the configured
// message size, and held by the left bytes of the frame.
func checkLength(size int64, left uint64, cfg *thrift.TConfiguration, what string) error {
	switch {
	case size < 0:
		return thrift.NewTProtocolExceptionWithType(thrift.NEGATIVE_SIZE, fmt.Errorf("negative size: %d", size))
	case size > int64(cfg.GetMaxMessageSize()):
		return thrift.NewTProtocolExceptionWithType(thrift.SIZE_LIMIT, fmt.Errorf("size exceeded max allowed: %d", size))
	case uint64(size) > left:
		return thrift.NewTProtocolException(fmt.Errorf("%s of %d bytes but %d left in the frame: %w", what, size, left, io.ErrUnexpectedEOF))
	}
	return nil
}

// ReadBinary reads a length-prefixed byte string with one allocation of
// its exact size.
func (p *binaryProtocol) ReadBinary(ctx context.Context) ([]byte, error) {
	if p.t.RemainingBytes() == math.MaxUint64 {
		return p.TBinaryProtocol.ReadBinary(ctx)
	}
	size, err := p.ReadI32(ctx)
	if err != nil {
		return nil, err
	}
	return readExact(p.t, int64(size), p.cfg)
}

// ReadBinary reads a varint-length-prefixed byte string with one
// allocation of its exact size.
func (p *compactProtocol) ReadBinary(ctx context.Context) ([]byte, error) {
	if p.br == nil || p.t.RemainingBytes() == math.MaxUint64 {
		return p.TCompactProtocol.ReadBinary(ctx)
	}
	size, err := p.readLength()
	if err != nil {
		return nil, err
	}
	return readExact(p.t, int64(size), p.cfg)
}

// readLength reads the varint length prefix of a binary field or string
// (p.br must be set).
func (p *compactProtocol) readLength() (uint64, error) {
	var size uint64
	for shift := uint(0); ; shift += 7 {
		if shift > 28 {
			return 0, thrift.NewTProtocolExceptionWithType(thrift.INVALID_DATA, fmt.Errorf("varint length longer than 5 bytes"))
		}
		b, err := p.br.ReadByte()
		if err != nil {
			return 0, thrift.NewTProtocolException(err)
		}
		size |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
	}
	if size > math.MaxInt32 {
		return 0, thrift.NewTProtocolExceptionWithType(thrift.NEGATIVE_SIZE, fmt.Errorf("negative size: %d", int32(size)))
	}
	return size, nil
}

// readExact reads size bytes after checking that the frame holds them.
func readExact(t thrift.TTransport, size int64, cfg *thrift.TConfiguration) ([]byte, error) {
	if err := checkLength(size, t.RemainingBytes(), cfg, "binary field"); err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(t, buf); err != nil {
		return nil, thrift.NewTProtocolException(err)
	}
	return buf, nil
}
