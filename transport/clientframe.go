package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"

	"github.com/apache/thrift/lib/go/thrift"
)

// clientFramed is a client connection's framed transport. Unlike the
// library's TFramedTransport over a stream transport, a request is encoded
// straight into one reused buffer and sent with one write, and a reply
// frame is read whole into a reused buffer and decoded in place (like the
// server's frameReader: binary fields are copied out at their exact size,
// method and command names cost no allocation). Not safe for concurrent
// use, like the connection.
type clientFramed struct {
	frameReader // the current reply frame
	nc          net.Conn
	br          *bufio.Reader
	in          []byte // the reply frame's buffer, reused
	out         []byte // the request being written, from its 4-byte header
	maxFrame    int
}

var _ thrift.TTransport = (*clientFramed)(nil)

// clientReadBuffer is the size of a connection's read buffer: a reply of up
// to this size costs one read system call.
const clientReadBuffer = 4 << 10

func newClientFramed(nc net.Conn, maxFrame int) *clientFramed {
	return &clientFramed{nc: nc, br: bufio.NewReaderSize(nc, clientReadBuffer), maxFrame: maxFrame, out: make([]byte, 4, 256)}
}

// next reads the next reply frame into the reusable buffer.
func (t *clientFramed) next() error {
	var hdr [4]byte
	if _, err := io.ReadFull(t.br, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > uint32(t.maxFrame) {
		return thrift.NewTTransportException(thrift.UNKNOWN_TRANSPORT_EXCEPTION, fmt.Sprintf("transport: reply frame of %d bytes is not in 1..%d", n, t.maxFrame))
	}
	if cap(t.in) < int(n) || cap(t.in) > 64<<10 && int(n) <= 64<<10 {
		// Grow to fit, or shrink back after a large reply.
		t.in = make([]byte, n, max(int(n), 512))
	}
	t.in = t.in[:n]
	if _, err := io.ReadFull(t.br, t.in); err != nil {
		return err
	}
	t.frameReader.reset(t.in)
	return nil
}

// Read reads from the current reply frame, reading the next frame once it
// is used up.
func (t *clientFramed) Read(p []byte) (int, error) {
	if len(p) > 0 && t.frameReader.RemainingBytes() == 0 {
		if err := t.next(); err != nil {
			return 0, thrift.NewTTransportExceptionFromError(err)
		}
	}
	return t.frameReader.Read(p)
}

// ReadByte is Read of one byte.
func (t *clientFramed) ReadByte() (byte, error) {
	if t.frameReader.RemainingBytes() == 0 {
		if err := t.next(); err != nil {
			return 0, thrift.NewTTransportExceptionFromError(err)
		}
	}
	return t.frameReader.ReadByte()
}

// Write appends to the request being encoded.
func (t *clientFramed) Write(p []byte) (int, error) {
	t.out = append(t.out, p...)
	return len(p), nil
}

// WriteByte appends a byte to the request being encoded.
func (t *clientFramed) WriteByte(c byte) error { t.out = append(t.out, c); return nil }

// WriteString appends a string to the request being encoded.
func (t *clientFramed) WriteString(s string) (int, error) {
	t.out = append(t.out, s...)
	return len(s), nil
}

// Flush sends the request: its length header and body in one write.
func (t *clientFramed) Flush(context.Context) error {
	size := len(t.out) - 4
	if size > t.maxFrame {
		t.out = t.out[:4]
		return thrift.NewTTransportException(thrift.UNKNOWN_TRANSPORT_EXCEPTION, fmt.Sprintf("transport: request frame of %d bytes is over the maximum %d", size, t.maxFrame))
	}
	binary.BigEndian.PutUint32(t.out, uint32(size))
	_, err := t.nc.Write(t.out)
	if cap(t.out) > 64<<10 {
		t.out = make([]byte, 4, 256) // do not keep a large request's buffer
	} else {
		t.out = t.out[:4]
	}
	if err != nil {
		return thrift.NewTTransportExceptionFromError(err)
	}
	return nil
}

// RemainingBytes is what is left of the current reply frame.
func (t *clientFramed) RemainingBytes() uint64 { return t.frameReader.RemainingBytes() }

// Open is a no-op: the connection is open.
func (t *clientFramed) Open() error { return nil }

// IsOpen reports true: a closed connection shows as an I/O error.
func (t *clientFramed) IsOpen() bool { return true }

// Close closes the connection.
func (t *clientFramed) Close() error { return t.nc.Close() }
