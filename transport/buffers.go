package transport

import (
	"context"
	"errors"
	"io"
	"math"
	"sync"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// frameReader is the server's input transport: it reads one request frame
// in place (the caller's buffer; nothing is copied), and knows how many
// bytes are left, so the protocols below allocate every binary field once
// at its exact size. Binary fields are copied out (readExact), so nothing
// decoded refers to the frame once the request is done.
type frameReader struct {
	b   []byte
	off int
}

var _ io.ByteReader = (*frameReader)(nil)

func (r *frameReader) reset(b []byte) { r.b, r.off = b, 0 }

func (r *frameReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *frameReader) ReadByte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// peek returns the next n bytes without copying them, or false if the
// frame holds fewer; consume(n) then skips them.
func (r *frameReader) peek(n int) ([]byte, bool) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, false
	}
	return r.b[r.off : r.off+n], true
}

func (r *frameReader) consume(n int) { r.off += n }

func (r *frameReader) RemainingBytes() uint64 { return uint64(len(r.b) - r.off) }

var errReadOnly = errors.New("transport: request frames are read-only")

func (r *frameReader) Write([]byte) (int, error)       { return 0, errReadOnly }
func (r *frameReader) Flush(context.Context) error     { return nil }
func (r *frameReader) Open() error                     { return nil }
func (r *frameReader) IsOpen() bool                    { return true }
func (r *frameReader) Close() error                    { return nil }
func (r *frameReader) WriteByte(byte) error            { return errReadOnly }
func (r *frameReader) WriteString(string) (int, error) { return 0, errReadOnly }

// replyWriter is the server's output transport: the protocol appends the
// reply to b, which is the caller's buffer while a request is processed
// (replies of several requests go one after the other into one buffer and
// out in one write).
type replyWriter struct{ b []byte }

func (w *replyWriter) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *replyWriter) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }
func (w *replyWriter) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}
func (w *replyWriter) Read([]byte) (int, error)    { return 0, io.EOF }
func (w *replyWriter) ReadByte() (byte, error)     { return 0, io.EOF }
func (w *replyWriter) RemainingBytes() uint64      { return math.MaxUint64 }
func (w *replyWriter) Flush(context.Context) error { return nil }
func (w *replyWriter) Open() error                 { return nil }
func (w *replyWriter) IsOpen() bool                { return true }
func (w *replyWriter) Close() error                { return nil }

// knownStrings are the strings requests carry over and over — method names
// and command names — so that decoding them costs no allocation: a
// received name that matches one is answered with the shared copy.
// Built once, read-only afterwards.
var knownStrings = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for name := range gen.NewDialKVProcessor(nil).ProcessorMap() {
		m[name] = name
	}
	for _, name := range core.CommandNames() {
		m[name] = name
	}
	return m
})

// internString returns b as a string, without allocating if it is a known
// name.
func internString(b []byte) string {
	if s, ok := knownStrings()[string(b)]; ok { // no allocation: map lookup
		return s
	}
	return string(b)
}
