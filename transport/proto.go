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

// binaryProtocol is TBinaryProtocol with an exact-size ReadBinary.
type binaryProtocol struct {
	*thrift.TBinaryProtocol
	t   thrift.TTransport
	cfg *thrift.TConfiguration
}

// compactProtocol is TCompactProtocol with an exact-size ReadBinary.
type compactProtocol struct {
	*thrift.TCompactProtocol
	t   thrift.TTransport
	br  io.ByteReader
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
		return cp
	}
	return &binaryProtocol{TBinaryProtocol: thrift.NewTBinaryProtocolConf(t, cfg), t: t, cfg: cfg}
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
	var size uint64
	for shift := uint(0); ; shift += 7 {
		if shift > 28 {
			return nil, thrift.NewTProtocolExceptionWithType(thrift.INVALID_DATA, fmt.Errorf("varint length longer than 5 bytes"))
		}
		b, err := p.br.ReadByte()
		if err != nil {
			return nil, thrift.NewTProtocolException(err)
		}
		size |= uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
	}
	if size > math.MaxInt32 {
		return nil, thrift.NewTProtocolExceptionWithType(thrift.NEGATIVE_SIZE, fmt.Errorf("negative size: %d", int32(size)))
	}
	return readExact(p.t, int64(size), p.cfg)
}

// readExact reads size bytes after checking that the frame holds them.
func readExact(t thrift.TTransport, size int64, cfg *thrift.TConfiguration) ([]byte, error) {
	switch {
	case size < 0:
		return nil, thrift.NewTProtocolExceptionWithType(thrift.NEGATIVE_SIZE, fmt.Errorf("negative size: %d", size))
	case size > int64(cfg.GetMaxMessageSize()):
		return nil, thrift.NewTProtocolExceptionWithType(thrift.SIZE_LIMIT, fmt.Errorf("size exceeded max allowed: %d", size))
	case uint64(size) > t.RemainingBytes():
		return nil, thrift.NewTProtocolException(fmt.Errorf("binary field of %d bytes but %d left in the frame: %w", size, t.RemainingBytes(), io.ErrUnexpectedEOF))
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(t, buf); err != nil {
		return nil, thrift.NewTProtocolException(err)
	}
	return buf, nil
}
