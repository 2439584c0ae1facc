package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/core"
)

// ProtocolRESP is Config.Protocol for a Redis server: the commands go out
// in Redis's RESP2 (a batch as a pipeline), so that the same load generator
// (its key and value sequences, its open-loop schedule, its histograms, and
// with --io loop its event loop) measures dialkv and redis-server alike.
// redis-benchmark has no open-loop mode.
const ProtocolRESP = "resp"

// errRESP is the class of the RESP codec's errors (a reply that is not of
// the kinds SET and GET return, a malformed length).
var errRESP = errors.New("resp")

// appendRESP appends cmds in RESP2 (one array of bulk strings each).
func appendRESP(dst []byte, cmds []core.Command) []byte {
	for _, c := range cmds {
		dst = append(dst, '*')
		dst = strconv.AppendInt(dst, int64(len(c.Args)+1), 10)
		dst = append(dst, '\r', '\n')
		dst = appendBulk(dst, []byte(c.Name))
		for _, a := range c.Args {
			dst = appendBulk(dst, a)
		}
	}
	return dst
}

func appendBulk(dst, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// respReplies parses n replies (the kinds SET and GET return: simple
// string, integer, error, bulk string or nil) from the start of data. It
// returns the bytes they take and how many were error replies; size 0 (and
// no error) means data does not hold all n yet.
func respReplies(data []byte, n int) (size, failed int, err error) {
	for range n {
		m, bad, err := respReply(data[size:])
		if err != nil || m == 0 {
			return 0, 0, err
		}
		size += m
		if bad {
			failed++
		}
	}
	return size, failed, nil
}

// maxRESPBulk bounds a bulk reply's length (the benchmark's values are at
// most 1 MiB).
const maxRESPBulk = 64 << 20

// respReply parses one reply from the start of data: its size (0: not
// complete yet) and whether it is an error reply.
func respReply(data []byte) (size int, bad bool, err error) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		if len(data) > 64 {
			return 0, false, fmt.Errorf("%w: no end of line in the first %d bytes of a reply", errRESP, len(data))
		}
		return 0, false, nil
	}
	if i < 2 || data[i-1] != '\r' {
		return 0, false, fmt.Errorf("%w: malformed reply line %q", errRESP, data[:i+1])
	}
	line := data[:i-1]
	switch line[0] {
	case '+', ':':
		return i + 1, false, nil
	case '-':
		return i + 1, true, nil
	case '$':
		l, err := strconv.Atoi(string(line[1:]))
		if err != nil || l < -1 || l > maxRESPBulk {
			return 0, false, fmt.Errorf("%w: bulk length %q", errRESP, line)
		}
		if l < 0 {
			return i + 1, false, nil // nil reply
		}
		end := i + 1 + l + 2
		if len(data) < end {
			return 0, false, nil
		}
		if data[end-2] != '\r' || data[end-1] != '\n' {
			return 0, false, fmt.Errorf("%w: bulk of %d bytes not ended by CRLF", errRESP, l)
		}
		return end, false, nil
	}
	return 0, false, fmt.Errorf("%w: unexpected reply %q", errRESP, line)
}

// respConn is a Conn speaking RESP2 over one TCP connection (the
// goroutine client's, and the event loop's key loading). A failed request
// closes it; the next request redials.
type respConn struct {
	addr    string
	timeout time.Duration
	nc      net.Conn
	r       *bufio.Reader
	out     []byte
}

var _ Conn = (*respConn)(nil)

// RESPConnector dials cfg's addresses (in turn, as ThriftConnectorFor does)
// and speaks RESP2 to them; a request without a context deadline gets
// cfg.Timeout.
func RESPConnector(cfg Config) (Connector, error) {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	addrs := splitAddrs(cfg.Addr)
	if len(addrs) == 0 {
		return nil, errors.New("--addr: no address")
	}
	var next atomic.Uint64
	return func(ctx context.Context) (Conn, error) {
		c := &respConn{addr: addrs[(next.Add(1)-1)%uint64(len(addrs))], timeout: timeout}
		if err := c.dial(ctx); err != nil {
			return nil, err
		}
		return c, nil
	}, nil
}

func (c *respConn) dial(ctx context.Context) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("resp: dial %s: %w", c.addr, err)
	}
	c.nc, c.r = nc, bufio.NewReaderSize(nc, 16<<10)
	return nil
}

// Do sends cmds as one pipeline and reads their replies; an error reply
// counts as failed.
func (c *respConn) Do(ctx context.Context, cmds []core.Command) (failed int, err error) {
	if c.nc == nil {
		if err := c.dial(ctx); err != nil {
			return 0, err
		}
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	dl := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	c.nc.SetDeadline(dl)
	c.out = appendRESP(c.out[:0], cmds)
	if _, err := c.nc.Write(c.out); err != nil {
		return 0, fmt.Errorf("resp: write: %w", err)
	}
	for range cmds {
		bad, err := c.reply()
		if err != nil {
			return 0, err
		}
		if bad {
			failed++
		}
	}
	return failed, nil
}

// reply reads one reply; bad is true for an error reply.
func (c *respConn) reply() (bad bool, err error) {
	// Peek whatever is buffered, and at least one byte more than the last
	// look when that did not hold the whole reply.
	for want := 1; ; {
		data, perr := c.r.Peek(min(max(want, c.r.Buffered()), c.r.Size()))
		size, bad, err := respReply(data)
		if err != nil {
			return false, err
		}
		if size > 0 {
			c.r.Discard(size)
			return bad, nil
		}
		if len(data) == c.r.Size() {
			// A bulk larger than the buffer: its header line is in.
			return c.bigBulk(data)
		}
		if perr != nil {
			return false, fmt.Errorf("resp: read: %w", perr)
		}
		want = len(data) + 1
	}
}

// bigBulk skips a bulk reply larger than the read buffer, whose first
// bytes are head.
func (c *respConn) bigBulk(head []byte) (bool, error) {
	i := bytes.IndexByte(head, '\n')
	if i < 2 || head[0] != '$' {
		return false, fmt.Errorf("%w: reply of more than %d bytes is not a bulk", errRESP, len(head))
	}
	l, err := strconv.Atoi(string(head[1 : i-1]))
	if err != nil || l < 0 || l > maxRESPBulk {
		return false, fmt.Errorf("%w: bulk length %q", errRESP, head[:i])
	}
	if _, err := c.r.Discard(i + 1 + l + 2); err != nil {
		return false, fmt.Errorf("resp: read bulk: %w", err)
	}
	return false, nil
}

// Close closes the connection.
func (c *respConn) Close() error {
	if c.nc == nil {
		return nil
	}
	err := c.nc.Close()
	c.nc = nil
	return err
}
