package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// DialOptions configure a client connection. Zero fields take defaults.
type DialOptions struct {
	Protocol Protocol // binary (default) or compact; must match the node's
	MaxFrame int      // largest frame accepted from or sent to the node; default 16 MiB
	// TLS, if set, makes the connection TLS (a client certificate in it
	// authenticates the connection on nodes started with --tls-ca).
	TLS *tls.Config
	// Login, if set, authenticates the connection right after it is made
	// (the login call; see Credentials).
	Login *Credentials
}

// Credentials are what a login presents: a user name and password, or an
// empty user and a bearer token. They print as "[REDACTED]" except for the
// user name.
type Credentials struct {
	User   string
	Secret string // the password, or the token when User is empty
}

// String never shows the secret.
func (c Credentials) String() string {
	if c.User == "" {
		return "token [REDACTED]"
	}
	return fmt.Sprintf("user %q password [REDACTED]", c.User)
}

// GoString never shows the secret.
func (c Credentials) GoString() string { return c.String() }

// LogValue never shows the secret.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// Conn is one client connection to a node: a generated DialKV client over a
// framed transport. A Conn is not safe for concurrent use (Thrift calls on
// one connection are strictly request-response); pool them.
type Conn struct {
	*gen.DialKVClient
	nc   net.Conn
	addr string
}

// Dial connects to addr ("host:port"), honouring ctx's deadline.
func Dial(ctx context.Context, addr string, opts DialOptions) (*Conn, error) {
	if opts.Protocol == "" {
		opts.Protocol = Binary
	}
	if opts.MaxFrame <= 0 {
		opts.MaxFrame = DefaultMaxFrame
	}
	var nc net.Conn
	var err error
	if opts.TLS != nil {
		d := tls.Dialer{Config: opts.TLS}
		nc, err = d.DialContext(ctx, "tcp", addr) // includes the handshake
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c := newConn(nc, addr, opts)
	if opts.Login != nil {
		if d, ok := ctx.Deadline(); ok {
			nc.SetDeadline(d)
		}
		_, err := c.DialKVClient.Login(ctx, opts.Login.User, []byte(opts.Login.Secret))
		nc.SetDeadline(time.Time{})
		if err != nil {
			nc.Close()
			return nil, fmt.Errorf("transport: login at %s as %s: %w", addr, opts.Login, err)
		}
	}
	return c, nil
}

// newConn is a client connection over nc (opts' defaults filled in).
func newConn(nc net.Conn, addr string, opts DialOptions) *Conn {
	cfg := &thrift.TConfiguration{MaxMessageSize: int32(opts.MaxFrame), MaxFrameSize: int32(opts.MaxFrame)}
	framed := newClientFramed(nc, opts.MaxFrame)
	iprot := opts.Protocol.newProtocol(framed, cfg)
	oprot := opts.Protocol.newProtocol(framed, cfg)
	return &Conn{DialKVClient: gen.NewDialKVClientProtocol(framed, iprot, oprot), nc: nc, addr: addr}
}

// Addr is the address the connection was dialled to.
func (c *Conn) Addr() string { return c.addr }

// SetDeadline bounds the next calls (zero: no deadline). A call that misses
// it fails with a timeout and leaves the connection unusable: close it.
func (c *Conn) SetDeadline(t time.Time) error { return c.nc.SetDeadline(t) }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Alive reports whether the idle connection still looks usable: the node
// has not closed it (nor half-closed it, nor has the socket an error) and,
// on a plain TCP connection, sent nothing unsolicited (a TLS connection may
// hold post-handshake records such as session tickets, which the next call
// reads). It costs a zero-timeout poll for POLLRDHUP/POLLHUP/POLLERR, then
// a non-blocking peek (recv with MSG_PEEK|MSG_DONTWAIT), both done through
// the raw connection's Control, which ignores deadlines: a pooled
// connection still carrying its last call's past deadline is judged on its
// socket. (Done through Read, a past deadline made Go's poller answer with
// a timeout before looking: a healthy pooled connection looked dead. The
// poll comes first because a TLS peer that closed sends a close_notify
// alert before its FIN, which the peek alone took for a waiting record.)
func (c *Conn) Alive() bool {
	_, isTLS := c.nc.(*tls.Conn)
	state := peekGone
	socket, err := rawControl(c.nc, func(fd uintptr) { state = socketState(fd) })
	switch {
	case !socket:
		return true // cannot tell: the call will
	case err != nil:
		return false
	}
	return state == peekEmpty || (state == peekData && isTLS)
}

// PeerHungUp reports whether the peer of connection nc (TCP, or TLS over
// TCP) has shut down its side or reset it, or the socket is in error: a
// zero-timeout poll for POLLRDHUP/POLLHUP/POLLERR through the raw
// connection's Control, so deadlines do not matter and nothing is read. It
// is false when it cannot tell (not a socket, or nc already closed here):
// the caller's next write reports those. raftls checks an idle message
// connection with it before writing, so a peer that restarted since is
// dialled again instead of losing the write.
func PeerHungUp(nc net.Conn) bool {
	gone := false
	if _, err := rawControl(nc, func(fd uintptr) { gone = hungUp(fd) }); err != nil {
		return false
	}
	return gone // false, f not run, if nc is not a socket
}

// rawControl runs f on the socket of nc (under TLS, of its TCP connection)
// through the raw connection's Control, which ignores deadlines. socket is
// false (and f not run) if nc is not a syscall.Conn; err is the raw
// connection's (nc already closed here, say).
func rawControl(nc net.Conn, f func(fd uintptr)) (socket bool, err error) {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true, fmt.Errorf("transport: raw connection: %w", err)
	}
	if err := rc.Control(f); err != nil {
		return true, fmt.Errorf("transport: raw connection control: %w", err)
	}
	return true, nil
}
