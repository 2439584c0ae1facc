package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
)

// Protocol is a Thrift protocol spelling: "binary" or "compact".
type Protocol string

// The protocols a server speaks and a client uses (both sides must agree).
const (
	Binary  Protocol = "binary"
	Compact Protocol = "compact"
)

// ParseProtocol parses "binary" or "compact".
func ParseProtocol(s string) (Protocol, error) {
	switch Protocol(s) {
	case Binary, Compact:
		return Protocol(s), nil
	}
	return "", fmt.Errorf("transport: unknown protocol %q (want binary or compact)", s)
}

// Defaults of ServerConfig.
const (
	DefaultMaxConns    = 20000
	DefaultIdleTimeout = 5 * time.Minute
	DefaultMaxFrame    = 16 << 20
	// DefaultFrameTimeout bounds how long the rest of a frame may take once
	// its first byte has arrived, and how long a response write may block.
	DefaultFrameTimeout = 10 * time.Second
)

// ConnMode is how a server holds its connections.
type ConnMode string

// The connection modes.
const (
	// ModeEpoll (Linux, the default there): idle connections hold no
	// goroutine and no buffer — a few hundred bytes each.
	ModeEpoll ConnMode = "epoll"
	// ModeGoroutine: one goroutine per connection blocked in a read
	// (portable; a few KB per idle connection).
	ModeGoroutine ConnMode = "goroutine"
)

// ParseConnMode parses "epoll" or "goroutine".
func ParseConnMode(s string) (ConnMode, error) {
	switch ConnMode(s) {
	case ModeEpoll, ModeGoroutine:
		return ConnMode(s), nil
	}
	return "", fmt.Errorf("transport: unknown connection mode %q (want epoll or goroutine)", s)
}

// ServerConfig configures a Server. Zero fields take the defaults.
type ServerConfig struct {
	Mode        ConnMode      // epoll (default on Linux) or goroutine
	Protocol    Protocol      // binary (default) or compact
	MaxConns    int           // connections beyond this are refused with an error
	IdleTimeout time.Duration // a connection silent this long is closed
	MaxFrame    int           // largest request frame in bytes; larger ones close the connection
	// FrameTimeout bounds reading the rest of a frame once it has started
	// and writing a response; a slower peer is disconnected. It also
	// bounds a held reply's wait (Hold), and a deferred request's unless
	// its own deadline is later (Deferred).
	FrameTimeout time.Duration
	Logger       *slog.Logger // nil: discard
	Observer     Observer     // nil: none
	// ConnContext, if set, derives the context of every request of a new
	// connection from the server's (for example the TLS client's identity,
	// a per-connection rate limiter or a login session). It is called once
	// per connection, before its first request; an error refuses the
	// connection (logged at debug level). In epoll mode nc is nil (epoll
	// mode reads raw sockets and never carries TLS).
	ConnContext func(ctx context.Context, nc net.Conn) (context.Context, error)
	// InlineMethods are the methods whose small requests an epoll-mode
	// server serves on its event loop instead of a worker goroutine. Their
	// handlers must check Inline(ctx) and return ErrServeOnWorker for a
	// request that would block (see inline.go). Empty: every request is
	// served by a worker.
	InlineMethods []string
	// WaitInPoller: an epoll-mode event loop with nothing to do waits in
	// Go's network poller, holding no P, instead of blocking in
	// epoll_wait. Worth it when other goroutines often block in system
	// calls while the loop waits (fdatasync under --fsync always: the
	// runtime's monitor otherwise retakes the loop's P and wakes every
	// 20 µs); otherwise the park and wake-up cost more CPU per request
	// than they save (docs/performance.md, issue 3, session 8).
	WaitInPoller bool
}

func (c *ServerConfig) fill() {
	if c.Mode == "" || (c.Mode == ModeEpoll && !epollModeSupported) {
		c.Mode = ModeGoroutine
		if epollModeSupported {
			c.Mode = ModeEpoll
		}
	}
	if c.Protocol == "" {
		c.Protocol = Binary
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = DefaultFrameTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
}

// Observer receives connection-level events for metrics. Calls are
// concurrent.
type Observer interface {
	ConnOpened()
	// ConnClosed is called once per opened connection; reason is "eof",
	// "idle", "bad_frame", "error" or "shutdown".
	ConnClosed(reason string)
	// ConnRejected counts connections refused by the connection limit.
	ConnRejected()
	BytesIn(n int)
	BytesOut(n int)
}

type nopObserver struct{}

func (nopObserver) ConnOpened()       {}
func (nopObserver) ConnClosed(string) {}
func (nopObserver) ConnRejected()     {}
func (nopObserver) BytesIn(int)       {}
func (nopObserver) BytesOut(int)      {}

// disableConnectivityCheck turns off the generated processors' per-request
// connectivity-check goroutine: our processors read from memory buffers, so
// the check could never fire, and it costs a goroutine and a ticker per
// request. The variable is the thrift library's; it is written once, by
// whichever of NewServer and ListenPeer runs first, before that server
// processes anything (a write while a processor reads it can panic:
// time.NewTicker(0)).
var disableConnectivityCheck = sync.OnceFunc(func() { thrift.ServerConnectivityCheckInterval = 0 })

// Server serves a Thrift processor over framed TCP connections.
type Server struct {
	cfg     ServerConfig
	proc    thrift.TProcessor
	tcfg    *thrift.TConfiguration
	codecs  sync.Pool
	ctx     context.Context
	cancel  context.CancelFunc
	nconns  atomic.Int64
	closing atomic.Bool
	// frameTimeout is cfg.FrameTimeout, changeable by tests.
	frameTimeout atomic.Int64
	wg           sync.WaitGroup
	// inline is the set of ServerConfig.InlineMethods (nil: none); ictx is
	// the inline request context of connections without a ConnContext.
	inline map[string]struct{}
	ictx   context.Context
	istate *inlineState // the event loop's (see Hold)

	mu    sync.Mutex
	lns   map[net.Listener]struct{}
	conns map[*serverConn]struct{}
	ep    *epollState
}

type serverConn struct {
	nc   net.Conn
	busy atomic.Bool
}

// connContext is the request context of a new connection (nc is nil in
// epoll mode).
func (s *Server) connContext(nc net.Conn) (context.Context, error) {
	if s.cfg.ConnContext == nil {
		return s.ctx, nil
	}
	ctx, err := s.cfg.ConnContext(s.ctx, nc)
	if err != nil {
		return nil, fmt.Errorf("transport: connection refused: %w", err)
	}
	return ctx, nil
}

// NewServer returns a server for proc (the generated DialKVProcessor).
func NewServer(proc thrift.TProcessor, cfg ServerConfig) *Server {
	disableConnectivityCheck()
	cfg.fill()
	s := &Server{
		cfg:   cfg,
		proc:  proc,
		lns:   map[net.Listener]struct{}{},
		conns: map[*serverConn]struct{}{},
		tcfg: &thrift.TConfiguration{
			MaxMessageSize: int32(cfg.MaxFrame),
			MaxFrameSize:   int32(cfg.MaxFrame),
		},
	}
	s.frameTimeout.Store(int64(cfg.FrameTimeout))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.istate = &inlineState{}
	s.ictx = s.withInline(s.ctx)
	if len(cfg.InlineMethods) > 0 && cfg.Mode == ModeEpoll {
		s.inline = map[string]struct{}{}
		for _, m := range cfg.InlineMethods {
			s.inline[m] = struct{}{}
		}
	}
	s.codecs.New = func() any { return s.newCodec() }
	return s
}

// NumConns is the number of open connections.
func (s *Server) NumConns() int { return int(s.nconns.Load()) }

// Mode is the server's connection mode.
func (s *Server) Mode() ConnMode { return s.cfg.Mode }

// Serve accepts connections on ln until Shutdown; it returns nil after
// Shutdown and the accept error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.lns[ln] = struct{}{}
	// Serve's own count keeps the WaitGroup above zero while it adds
	// connections, so Shutdown's Wait never races an Add from zero.
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	if s.cfg.Mode == ModeEpoll {
		return s.serveEpoll(ln)
	}
	return s.serveGoroutines(ln)
}

func (s *Server) serveGoroutines(ln net.Listener) error {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Out of file descriptors or a transient error: back off.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.cfg.Logger.Warn("accept failed; backing off", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("transport: accept: %w", err)
		}
		delay = 0
		if int(s.nconns.Load()) >= s.cfg.MaxConns {
			s.cfg.Observer.ConnRejected()
			s.wg.Add(1)
			go s.reject(nc)
			continue
		}
		s.nconns.Add(1)
		s.cfg.Observer.ConnOpened()
		c := &serverConn{nc: nc}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish and closes their connections, waiting until ctx is done;
// then it closes whatever remains.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		if !c.busy.Load() {
			c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the reader, which sees closing
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		c.nc.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// reject answers the first request of a connection over the limit with an
// application exception ("UNAVAILABLE connection limit reached ...") and
// closes it.
func (s *Server) reject(nc net.Conn) {
	defer s.wg.Done()
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(2 * time.Second))
	msg := fmt.Sprintf("UNAVAILABLE connection limit reached (max-conns %d); retry later", s.cfg.MaxConns)
	name, seq := "", int32(0)
	if frame, err := readFrame(nc, nil, 64<<10); err == nil {
		c := s.codecs.Get().(*codec)
		c.reset(frame)
		if n, _, sq, err := c.iprot.ReadMessageBegin(s.ctx); err == nil {
			name, seq = n, sq
		}
		s.codecs.Put(c)
	}
	nc.Write(s.exceptionFrame(name, seq, thrift.INTERNAL_ERROR, msg))
}

// exceptionFrame encodes a framed application exception.
func (s *Server) exceptionFrame(name string, seq int32, typ int32, msg string) []byte {
	c := s.newCodec()
	c.reset(nil)
	writeException(s.ctx, c.oprot, name, seq, typ, msg)
	return c.frame()
}

// messageHeader decodes the method name and sequence number of a request
// frame ("" and 0 if its header does not decode).
func (s *Server) messageHeader(frame []byte) (string, int32) {
	var in frameReader
	in.reset(frame)
	name, _, seq, err := s.cfg.Protocol.newProtocol(&in, s.tcfg).ReadMessageBegin(s.ctx)
	if err != nil {
		return "", 0
	}
	return name, seq
}

func writeException(ctx context.Context, oprot thrift.TProtocol, name string, seq int32, typ int32, msg string) {
	x := thrift.NewTApplicationException(typ, msg)
	oprot.WriteMessageBegin(ctx, name, thrift.EXCEPTION, seq)
	x.Write(ctx, oprot)
	oprot.WriteMessageEnd(ctx)
	oprot.Flush(ctx)
}

func (s *Server) serveConn(c *serverConn) {
	defer s.wg.Done()
	reason := "eof"
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.nconns.Add(-1)
		s.cfg.Observer.ConnClosed(reason)
	}()
	// The context (a TLS handshake, for TLS listeners) is bounded by the
	// frame timeout, so a silent client cannot hold a goroutine forever.
	c.nc.SetDeadline(time.Now().Add(time.Duration(s.frameTimeout.Load())))
	ctx, err := s.connContext(c.nc)
	if err != nil {
		reason = "error"
		s.cfg.Logger.Debug("refusing connection", "remote", c.nc.RemoteAddr().String(), "err", err)
		return
	}
	c.nc.SetDeadline(time.Time{})
	var hdr [4]byte
	var buf, out []byte // the request frame, the reply; reused
	for {
		if s.closing.Load() {
			reason = "shutdown"
			return
		}
		c.nc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if _, err := io.ReadFull(c.nc, hdr[:1]); err != nil {
			reason = closeReason(err, s.closing.Load())
			return
		}
		c.busy.Store(true)
		c.nc.SetDeadline(time.Now().Add(time.Duration(s.frameTimeout.Load())))
		if _, err := io.ReadFull(c.nc, hdr[1:]); err != nil {
			reason = closeReason(err, false)
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || n > uint32(s.cfg.MaxFrame) {
			reason = "bad_frame"
			s.cfg.Logger.Warn("closing connection: bad frame size", "remote", c.nc.RemoteAddr().String(), "size", n, "max", s.cfg.MaxFrame)
			c.nc.Write(s.exceptionFrame("", 0, thrift.PROTOCOL_ERROR,
				fmt.Sprintf("frame size %d is not in 1..%d (max-frame); closing connection", n, s.cfg.MaxFrame)))
			return
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		frame := buf[:n]
		if _, err := io.ReadFull(c.nc, frame); err != nil {
			reason = closeReason(err, false)
			return
		}
		s.cfg.Observer.BytesIn(int(n) + 4)
		var keep bool
		out, keep = s.appendProcess(ctx, out[:0], frame)
		if _, err := c.nc.Write(out); err != nil {
			reason = "error"
			return
		}
		s.cfg.Observer.BytesOut(len(out))
		if !keep {
			reason = "bad_frame"
			return
		}
		c.busy.Store(false)
		if cap(buf) > 64<<10 {
			buf = nil // do not pin a large frame's buffer on an idle connection
		}
		if cap(out) > 64<<10 {
			out = nil // nor a large reply's
		}
	}
}

func closeReason(err error, closing bool) string {
	if closing {
		return "shutdown"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "idle"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "eof"
	}
	return "error"
}

// readFrame reads one frame from r (into buf if it is big enough).
func readFrame(r io.Reader, buf []byte, maxFrame int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > uint32(maxFrame) {
		return nil, fmt.Errorf("transport: frame size %d is not in 1..%d", n, maxFrame)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// codec is the per-request decoding state, pooled.
type codec struct {
	in           frameReader
	out          replyWriter
	iprot, oprot thrift.TProtocol
}

func (s *Server) newCodec() *codec {
	c := &codec{}
	c.iprot = s.cfg.Protocol.newProtocol(&c.in, s.tcfg)
	c.oprot = s.cfg.Protocol.newProtocol(&c.out, s.tcfg)
	return c
}

// reset points the codec at a request frame and an empty reply.
func (c *codec) reset(frame []byte) {
	c.in.reset(frame)
	c.out.b = append(c.out.b[:0], 0, 0, 0, 0) // frame header, patched by frame()
}

// frame returns the response with its 4-byte length header.
func (c *codec) frame() []byte {
	b := c.out.b
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// Process decodes one request frame (without its length header), runs it
// and returns the framed response (nil if there is none) and whether the
// connection may stay open. A request that does not decode gets a Thrift
// application exception; the framing is intact, so the connection stays
// open. A panic in the handler closes the connection and is logged.
func (s *Server) Process(frame []byte) (resp []byte, keep bool) {
	return s.ProcessContext(s.ctx, frame)
}

// ProcessContext is Process with the request context of a connection (see
// ServerConfig.ConnContext).
func (s *Server) ProcessContext(ctx context.Context, frame []byte) (resp []byte, keep bool) {
	return s.appendProcess(ctx, make([]byte, 0, 128), frame)
}

// appendProcess is ProcessContext appending the framed response to dst:
// the connection loops encode replies straight into their write buffer
// (no copy, no allocation once it has grown) and send the replies of
// every request a read brought in one write. frame is only read, and not
// referred to once it returns.
func (s *Server) appendProcess(ctx context.Context, dst, frame []byte) (out []byte, keep bool) {
	out, keep, _, _, _ = s.appendProcessMode(ctx, dst, frame, false)
	return out, keep
}

// appendProcessMode is appendProcess; with inline set (ctx is an inline
// context), a request whose handler returned ErrServeOnWorker is dropped:
// out is dst as it was, and abandoned is true; never is also true when the
// handler returned ErrNotInline, deferred when it returned ErrDeferred.
func (s *Server) appendProcessMode(ctx context.Context, dst, frame []byte, inline bool) (out []byte, keep, abandoned, never, deferred bool) {
	c, start := s.beginFrame(dst, frame)
	keep = true
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.cfg.Logger.Error("request handler panicked; closing connection", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				c.out.b = append(c.out.b[:start], 0, 0, 0, 0)
				// Answer under the request's method name and sequence
				// number, so the client reads the exception (not "wrong
				// method name") before the connection closes.
				name, seq := s.messageHeader(frame)
				writeException(s.ctx, c.oprot, name, seq, thrift.INTERNAL_ERROR, fmt.Sprintf("internal error: %v", r))
				keep = false
			}
		}()
		_, err := s.proc.Process(ctx, c.iprot, c.oprot)
		if inline && err != nil && errors.Is(err, ErrServeOnWorker) {
			// endFrame cuts what was written (nothing is answered).
			abandoned, never, deferred = true, errors.Is(err, ErrNotInline), errors.Is(err, ErrDeferred)
			return
		}
		if err != nil && len(c.out.b) == start+4 {
			// Nothing was written: the message header did not decode.
			writeException(s.ctx, c.oprot, "", 0, thrift.PROTOCOL_ERROR, "cannot decode request: "+err.Error())
		}
	}()
	return s.endFrame(c, start, !abandoned), keep, abandoned, never, deferred
}

// beginFrame takes a pooled codec to answer request frame: its input reads
// frame, its output appends to dst after a frame header placeholder at
// start (len(dst)). endFrame finishes the frame and returns the codec.
func (s *Server) beginFrame(dst, frame []byte) (c *codec, start int) {
	c = s.codecs.Get().(*codec)
	c.in.reset(frame)
	start = len(dst)
	c.out.b = append(dst, 0, 0, 0, 0) // frame header, patched by endFrame
	return c, start
}

// endFrame returns what c's output holds: with the frame written after
// start patched into its header if keep, else cut back to start (dst as it
// was given to beginFrame). c goes back to the pool.
func (s *Server) endFrame(c *codec, start int, keep bool) []byte {
	out := c.out.b
	if keep {
		binary.BigEndian.PutUint32(out[start:], uint32(len(out)-start-4))
	} else {
		out = out[:start]
	}
	c.out.b = nil // the caller's buffer: not the pool's
	c.in.reset(nil)
	s.codecs.Put(c)
	return out
}

// appendAnswer appends to dst the reply of deferred request frame, done,
// as d writes it (DeferredAnswer), in a frame of its own; ok false: d
// wrote nothing (or the frame's header did not decode, or d panicked: the
// processor then answers), dst is returned as it was.
func (s *Server) appendAnswer(ctx context.Context, dst, frame []byte, d DeferredAnswer) (out []byte, ok bool) {
	c, start := s.beginFrame(dst, frame)
	func() {
		defer func() {
			if r := recover(); r != nil {
				s.cfg.Logger.Error("deferred answer panicked; serving the request again", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				ok = false
			}
		}()
		name, _, seq, err := c.iprot.ReadMessageBegin(ctx)
		ok = err == nil && d.WriteAnswer(ctx, name, seq, c.oprot)
	}()
	return s.endFrame(c, start, ok), ok
}

// SetFrameTimeoutForTest changes FrameTimeout on a running server (tests).
func (s *Server) SetFrameTimeoutForTest(d time.Duration) {
	s.frameTimeout.Store(int64(d))
}
