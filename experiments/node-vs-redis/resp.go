package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/dialkv/dialkv/clients/bench"
	"github.com/dialkv/dialkv/core"
)

// respConn is a bench.Conn speaking Redis's RESP2 over one TCP connection,
// so that dialkv bench's runner (its key and value choices, its open-loop
// schedule and HDR histograms) can load redis-server too: redis-benchmark
// has no open-loop mode (it always sends a connection's next request when
// the last reply arrives). A batch is sent as a pipeline.
type respConn struct {
	nc      net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
}

var _ bench.Conn = (*respConn)(nil)

// respConnector dials addr for every connection.
func respConnector(addr string, timeout time.Duration) bench.Connector {
	return func(ctx context.Context) (bench.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("resp: dial %s: %w", addr, err)
		}
		return &respConn{nc: nc, r: bufio.NewReaderSize(nc, 16<<10), w: bufio.NewWriterSize(nc, 16<<10), timeout: timeout}, nil
	}
}

// Do sends cmds as one pipeline and reads their replies; an error reply
// counts as failed.
func (c *respConn) Do(ctx context.Context, cmds []core.Command) (failed int, err error) {
	dl := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	c.nc.SetDeadline(dl)
	for _, cmd := range cmds {
		c.w.WriteByte('*')
		c.w.WriteString(strconv.Itoa(len(cmd.Args) + 1))
		c.w.WriteString("\r\n")
		c.bulk([]byte(cmd.Name))
		for _, a := range cmd.Args {
			c.bulk(a)
		}
	}
	if err := c.w.Flush(); err != nil {
		return 0, fmt.Errorf("resp: write: %w", err)
	}
	for range cmds {
		bad, err := c.reply()
		if err != nil {
			return failed, err
		}
		if bad {
			failed++
		}
	}
	return failed, nil
}

func (c *respConn) bulk(b []byte) {
	c.w.WriteByte('$')
	c.w.WriteString(strconv.Itoa(len(b)))
	c.w.WriteString("\r\n")
	c.w.Write(b)
	c.w.WriteString("\r\n")
}

// reply reads one reply of the kinds SET and GET return; bad is true for
// an error reply.
func (c *respConn) reply() (bad bool, err error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return false, fmt.Errorf("resp: read: %w", err)
	}
	if len(line) < 3 {
		return false, fmt.Errorf("resp: short reply line %q", line)
	}
	switch line[0] {
	case '+', ':':
		return false, nil
	case '-':
		return true, nil
	case '$':
		n, err := strconv.Atoi(string(line[1 : len(line)-2]))
		if err != nil {
			return false, fmt.Errorf("resp: bulk length %q: %w", line, err)
		}
		if n < 0 {
			return false, nil // nil reply
		}
		if _, err := c.r.Discard(n + 2); err != nil {
			return false, fmt.Errorf("resp: read bulk: %w", err)
		}
		return false, nil
	}
	return false, errors.New("resp: unexpected reply " + strconv.Quote(string(line)))
}

func (c *respConn) Close() error { return c.nc.Close() }
