//go:build linux

package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	"golang.org/x/sys/unix"
)

// The epoll connection mode (Linux): idle connections cost no goroutine and
// no buffer. Accepted sockets are taken out of Go's network poller and
// registered, edge-triggered, with an epoll instance of the server's own;
// one goroutine waits on it, and a readable connection is handed to a
// worker goroutine that reads what is there and serves every complete
// frame in order. Between requests a connection is a small struct in a
// table indexed by file descriptor.
//
// Edge-triggered registration costs no epoll_ctl per request (one-shot
// registration needed a re-arm after each one). Ownership rules, in
// econn.state:
//
//   - idle -> busy: the event loop (on an event) or the sweeper / shutdown
//     (to close it) takes an idle connection; only the owner reads, writes
//     or closes it.
//   - busy -> pending: an event arrived while it was owned. Every arrival of
//     data raises an edge, so an event the owner might have missed is
//     recorded here instead of being lost.
//   - The owner, after a read that did not fill its buffer (the socket was
//     drained at that moment) and after serving the frames, releases it:
//     busy -> idle; if it finds pending instead, it sets busy and reads
//     again. A read that filled the buffer is followed by another read
//     without releasing (no new edge comes for bytes already queued).

const epollModeSupported = true

// econn is one connection in epoll mode.
type econn struct {
	fd  int
	gen uint32 // matches the epoll event's Pad; stale events are ignored
	// state is connIdle, connBusy or connPending (see the rules above).
	state      atomic.Int32
	lastActive atomic.Int64 // unix nanoseconds of the last byte read
	// partial holds an incomplete frame's bytes (nil when idle); only the
	// owner touches it. inFrame mirrors partial != nil for the sweeper.
	partial []byte
	inFrame atomic.Bool
	// queued says that partial may hold complete frames the event loop
	// left to a worker, to serve before reading (the owner's; it sits in
	// inFrame's padding, so an idle connection costs no more).
	queued bool
	// skipInline counts down the readable events the event loop hands
	// straight to a worker after a request returned ErrNotInline (the
	// owner's, like queued).
	skipInline uint8
	ctx        context.Context // request context (ServerConfig.ConnContext)
}

type epollState struct {
	epfd int
	// epf is epfd as a file of Go's network poller, and erc its raw
	// access, with ServerConfig.WaitInPoller (else nil): the event loop
	// waits for epfd to become readable there instead of blocking in
	// epoll_wait (see epollLoop). Closing epf (at
	// shutdown) wakes a waiting loop; the descriptor is released once no
	// call through erc is running.
	epf     *os.File
	erc     syscall.RawConn
	lfd     int           // the listener's descriptor
	done    chan struct{} // closed when the event loop ends
	err     error         // why it ended, if not Shutdown
	delay   time.Duration // accept backoff
	work    chan *econn   // to idle workers (unbuffered)
	mu      sync.RWMutex
	conns   []*econn // by fd
	gen     uint32
	scratch sync.Pool
	// holds are the connections whose replies wait (see Hold), by what
	// they wait for — a deferred request (see ErrDeferred) waits for its
	// Deferred, as a deferWait —; whoever takes a group out of the map
	// (the Waiter's OnDone callback, or the expiry: epollExpireHolds)
	// finishes it.
	holdMu sync.Mutex
	holds  map[Waiter]*holdGroup
}

// deferWait is a deferred request's Deferred as the Waiter it is held on:
// a Deferred has no failure of its own (its outcome is in the reply the
// frame served again gives).
type deferWait struct{ Deferred }

func (deferWait) Err() error { return nil }

// holdGroup is the connections held on one Waiter.
type holdGroup struct {
	since int64 // unix nanoseconds of the first hold
	// until: for a deferred request with a deadline (a group holds one
	// deferred request: a Deferred is one request's), unix nanoseconds
	// of its deadline plus deferGrace; 0 otherwise.
	until int64
	hs    []*heldReply
}

// expired reports whether the group has waited too long at now, with
// frame timeout ft: longer than ft, and, for a deferred request with a
// deadline, past its deadline plus deferGrace unless the server is closing.
// Ordering rule: the frame timeout is the bound of every hold, and a
// deferred request's own deadline only extends it, never shortens it (a
// held reply, waiting for an fsync epoch, keeps the frame timeout alone);
// once closing, Shutdown waits for a hold at most the frame timeout.
func (g *holdGroup) expired(now, ft int64, closing bool) bool {
	if now-g.since <= ft {
		return false
	}
	return closing || g.until == 0 || now > g.until
}

// heldReply is a connection whose replies wait for w (see Hold). Its
// owner is the goroutine that finishes it.
type heldReply struct {
	c    *econn
	out  []byte // the replies of the read, the held one last
	w    Waiter
	more bool // the read filled the buffer: the socket may hold more
	// d: a deferred request (see ErrDeferred), whose frame is served
	// again once d is done, its reply appended to out (w is deferWait{d}).
	d     Deferred
	frame []byte
}

const epollEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET

// The econn states.
const (
	connIdle    int32 = iota // nobody owns it
	connBusy                 // owned by a worker, the sweeper or shutdown
	connPending              // owned, and an event arrived meanwhile
)

// own takes an idle connection (to serve or close it).
func (c *econn) own() bool { return c.state.CompareAndSwap(connIdle, connBusy) }

// notify records an event: it returns true if the caller now owns the
// connection and must serve it; otherwise the owner will read again.
func (c *econn) notify() bool {
	for {
		switch c.state.Load() {
		case connIdle:
			if c.state.CompareAndSwap(connIdle, connBusy) {
				return true
			}
		case connBusy:
			if c.state.CompareAndSwap(connBusy, connPending) {
				return false
			}
		default:
			return false
		}
	}
}

// release gives up ownership; false means an event arrived meanwhile and
// the caller still owns the connection and must read it again.
func (c *econn) release() bool {
	if c.state.CompareAndSwap(connBusy, connIdle) {
		return true
	}
	c.state.Store(connBusy) // was pending
	return false
}

// scratchSize is the read buffer a readable connection borrows; frames
// larger than what one read returns accumulate in the connection's partial
// buffer.
const scratchSize = 4 << 10

// listenerMark tags the listener's epoll events (connection events carry
// a generation, which is never negative).
const listenerMark = -1

func (s *Server) serveEpoll(ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return s.serveGoroutines(ln)
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return fmt.Errorf("transport: listener: %w", err)
	}
	lfd := -1
	rc.Control(func(fd uintptr) { lfd = int(fd) })
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("transport: epoll_create: %w", err)
	}
	st := &epollState{epfd: epfd, lfd: lfd, done: make(chan struct{}), work: make(chan *econn), holds: map[Waiter]*holdGroup{}}
	if s.cfg.WaitInPoller {
		// Non-blocking, so that os.NewFile registers it with Go's poller.
		if err := unix.SetNonblock(epfd, true); err != nil {
			unix.Close(epfd)
			return fmt.Errorf("transport: epoll instance: %w", err)
		}
		st.epf = os.NewFile(uintptr(epfd), "epoll")
		if st.erc, err = st.epf.SyscallConn(); err != nil {
			st.closeEpoll()
			return fmt.Errorf("transport: epoll instance: %w", err)
		}
	}
	st.scratch.New = func() any { return &ioBuffers{in: make([]byte, scratchSize)} }
	// The listener stays Go's (Shutdown closes it); it is also watched,
	// level-triggered, by this epoll instance, and accepted from here.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd), Pad: listenerMark}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, lfd, &ev); err != nil {
		st.closeEpoll()
		return fmt.Errorf("transport: epoll_ctl listener: %w", err)
	}
	s.mu.Lock()
	s.ep = st
	s.mu.Unlock()
	s.wg.Add(2)
	go s.epollLoop(st)
	go s.epollSweep(st)
	<-st.done
	return st.err
}

// epollAccept accepts every pending connection.
func (s *Server) epollAccept(st *epollState) {
	for !s.closing.Load() {
		fd, _, err := unix.Accept4(st.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case err == nil:
			s.epollAdd(st, fd)
			st.delay = 0
		case errors.Is(err, unix.EAGAIN):
			return
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
		case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE), errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENOMEM):
			// Out of descriptors or memory: back off (the listener stays
			// readable, so the loop comes back here).
			st.delay = min(max(2*st.delay, 5*time.Millisecond), time.Second)
			s.cfg.Logger.Warn("accept failed; backing off", "err", err, "delay", st.delay)
			time.Sleep(st.delay)
			return
		default:
			st.err = fmt.Errorf("transport: accept: %w", err)
			return
		}
	}
}

// epollAdd registers an accepted socket, or refuses it over the limit.
func (s *Server) epollAdd(st *epollState, fd int) {
	if int(s.nconns.Load()) >= s.cfg.MaxConns {
		s.cfg.Observer.ConnRejected()
		// Rare path: hand the socket to Go's poller and answer it there.
		f := os.NewFile(uintptr(fd), "rejected")
		nc, err := net.FileConn(f)
		f.Close()
		if err == nil {
			s.wg.Add(1)
			go s.reject(nc)
		}
		return
	}
	ctx, err := s.connContext(nil)
	if err != nil {
		s.cfg.Logger.Debug("refusing connection", "err", err)
		unix.Close(fd)
		return
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	st.mu.Lock()
	st.gen++
	c := &econn{fd: fd, gen: st.gen, ctx: ctx}
	c.lastActive.Store(time.Now().UnixNano())
	for len(st.conns) <= fd {
		st.conns = append(st.conns, nil)
	}
	st.conns[fd] = c
	st.mu.Unlock()
	s.nconns.Add(1)
	s.cfg.Observer.ConnOpened()
	ev := unix.EpollEvent{Events: epollEvents, Fd: int32(fd), Pad: int32(c.gen)}
	if err := unix.EpollCtl(st.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		s.cfg.Logger.Error("epoll_ctl add", "err", err)
		c.state.Store(connBusy)
		s.epollClose(st, c, "error")
	}
}

func (st *epollState) lookup(fd int32, gen int32) *econn {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if int(fd) >= len(st.conns) {
		return nil
	}
	c := st.conns[fd]
	if c == nil || c.gen != uint32(gen) {
		return nil
	}
	return c
}

// epollClose closes a connection its caller owns.
func (s *Server) epollClose(st *epollState, c *econn, reason string) {
	unix.EpollCtl(st.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	st.mu.Lock()
	if c.fd < len(st.conns) && st.conns[c.fd] == c {
		st.conns[c.fd] = nil
	}
	st.mu.Unlock()
	unix.Close(c.fd)
	c.partial = nil
	s.nconns.Add(-1)
	s.cfg.Observer.ConnClosed(reason)
}

func (s *Server) epollLoop(st *epollState) {
	defer s.wg.Done()
	defer close(st.done)
	events := make([]unix.EpollEvent, 256)
	bufs := &ioBuffers{in: make([]byte, scratchSize)} // the loop's, for inline serving
	// With WaitInPoller the loop never blocks in epoll_wait: it asks for
	// the ready events without waiting and, when there are none, waits in
	// Go's network poller for epfd to become readable (it is registered there,
	// edge-triggered; an edge that comes between the empty epoll_wait and
	// the wait is kept by the poller, so none is missed). A goroutine
	// blocked in a system call keeps its P, and the runtime's monitor
	// retakes it after 20 µs when no other P is idle; under --fsync always
	// the loop waits often while Pebble's WAL goroutine is in fdatasync,
	// and the monitor then woke every 20 µs (docs/performance.md, issue 3).
	// Parked in the poller, the loop holds no P. The price is a park and
	// a wake-up through the runtime's own epoll instance per wait, which
	// without fdatasync in the picture costs more than it saves (fsync
	// never, quiet machine: 1.17x node CPU per operation), so without
	// WaitInPoller the loop blocks in epoll_wait (100 ms at most, so that
	// it sees s.closing).
	var n int
	var err error
	wait := func(fd uintptr) bool {
		n, err = unix.EpollWait(int(fd), events, 0)
		if errors.Is(err, unix.EINTR) {
			// Ask again, without waiting in between: events queued
			// before this call raised no edge the poller kept.
			n, err = 0, nil
			return true
		}
		return n > 0 || err != nil
	}
	for !s.closing.Load() && st.err == nil {
		if st.erc == nil {
			n, err = unix.EpollWait(st.epfd, events, 100)
			if errors.Is(err, unix.EINTR) {
				continue
			}
		} else if rerr := st.erc.Read(wait); rerr != nil {
			if s.closing.Load() {
				return // epf closed by the shutdown
			}
			st.err = fmt.Errorf("transport: waiting for epoll events: %w", rerr)
			return
		}
		if err != nil {
			st.err = fmt.Errorf("transport: epoll_wait: %w", err)
			return
		}
		for i := range n {
			if events[i].Pad == listenerMark && int(events[i].Fd) == st.lfd {
				s.epollAccept(st)
				continue
			}
			c := st.lookup(events[i].Fd, events[i].Pad)
			if c == nil || !c.notify() {
				continue
			}
			if s.inline != nil && c.skipInline == 0 {
				s.epollInline(st, c, bufs)
				continue
			}
			if c.skipInline > 0 {
				// Its last request tried on the loop could not be
				// served there (ErrNotInline): the worker reads.
				c.skipInline--
			}
			s.epollDispatch(st, c)
		}
	}
}

// workerIdle is how long a worker goroutine waits for more work before
// it exits. Reusing workers spares a goroutine start (and stack growth) per
// request; idle connections still hold none.
const workerIdle = time.Second

// epollDispatch hands a readable connection to an idle worker, or starts
// one.
func (s *Server) epollDispatch(st *epollState, c *econn) {
	select {
	case st.work <- c:
	default:
		s.wg.Add(1)
		go s.epollWorker(st, c)
	}
}

func (s *Server) epollWorker(st *epollState, c *econn) {
	defer s.wg.Done()
	t := time.NewTimer(workerIdle)
	defer t.Stop()
	for {
		s.epollServe(st, c)
		t.Reset(workerIdle)
		select {
		case c = <-st.work:
		case <-t.C:
			return
		case <-st.done:
			return
		}
	}
}

// ioBuffers are what a worker serving a connection borrows: the read
// buffer and the buffer the replies are encoded into.
type ioBuffers struct {
	in  []byte
	out []byte
}

// maxPendingReplies is how many bytes of replies a worker collects before
// it writes them even though more complete frames are waiting.
const maxPendingReplies = 64 << 10

// epollServe reads what a readable connection has, serves its complete
// frames in order, and releases the connection (or closes it).
func (s *Server) epollServe(st *epollState, c *econn) {
	bufs := st.scratch.Get().(*ioBuffers)
	defer func() {
		if cap(bufs.out) > maxPendingReplies*2 {
			bufs.out = nil // do not pool a large reply's buffer
		}
		st.scratch.Put(bufs)
	}()
	if c.queued {
		// Frames the event loop left: serve them before reading more.
		c.queued = false
		if ok, _, _ := s.epollFrames(st, c, nil, bufs, false); !ok {
			return
		}
	}
	buf := bufs.in
	for {
		n, err := unix.Read(c.fd, buf)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			if c.release() {
				return
			}
			continue
		case err != nil:
			s.epollClose(st, c, "error")
			return
		case n == 0:
			s.epollClose(st, c, "eof")
			return
		}
		if ok, _, _ := s.epollFrames(st, c, buf[:n], bufs, false); !ok {
			return // closed
		}
		if s.closing.Load() {
			s.epollClose(st, c, "shutdown")
			return
		}
		// A full buffer may have left bytes in the socket, for which no
		// new edge will come: read again before releasing.
		if n < len(buf) && c.release() {
			return
		}
	}
}

// epollInline serves a readable connection on the event loop (see
// inline.go): one read, the frames it completes that may be served inline,
// one write of their replies. The connection goes to a worker when a frame
// may not be served inline, or when the read filled the buffer (more may be
// waiting in the socket, and no new edge will come for it); otherwise it is
// released.
func (s *Server) epollInline(st *epollState, c *econn, bufs *ioBuffers) {
	buf := bufs.in
	var n int
	var err error
	for {
		n, err = unix.Read(c.fd, buf)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case errors.Is(err, unix.EAGAIN):
		if !c.release() {
			s.epollDispatch(st, c)
		}
		return
	case err != nil:
		s.epollClose(st, c, "error")
		return
	case n == 0:
		s.epollClose(st, c, "eof")
		return
	}
	ok, handoff, held := s.epollFrames(st, c, buf[:n], bufs, true)
	if cap(bufs.out) > maxPendingReplies*2 {
		bufs.out = nil // do not keep a large reply's buffer
	}
	switch {
	case !ok:
		return // closed
	case held != nil: // a Hold's, or a deferred request's
		held.more = n == len(buf)
		s.epollHold(st, held)
	case s.closing.Load():
		s.epollClose(st, c, "shutdown")
	case handoff || n == len(buf) || !c.release():
		s.epollDispatch(st, c)
	}
}

// epollFrames serves the complete frames of what was just read (after any
// partial frame kept from before) and keeps the rest; ok false means it
// closed the connection. The replies are encoded one after the other into
// bufs.out and written with one write once every complete frame is served
// (or when maxPendingReplies have collected): a client that pipelines
// requests gets one write per read, not one per request.
//
// On the event loop (inline), it stops at the first frame it may not serve
// there (see inline.go): that frame and the rest are kept in c.partial
// with c.queued set, the replies so far are written, and handoff is true:
// the caller hands the connection to a worker. A request that holds its
// reply (see Hold) stops it too: the replies so far are not written but
// returned in held, with the rest of the input kept in c.partial (c.queued
// set if there is any), for epollHold.
func (s *Server) epollFrames(st *epollState, c *econn, data []byte, bufs *ioBuffers, inline bool) (ok, handoff bool, held *heldReply) {
	if len(data) > 0 {
		c.lastActive.Store(time.Now().UnixNano())
		s.cfg.Observer.BytesIn(len(data))
	}
	ctx := c.ctx
	if inline {
		ctx = s.ictx
		if c.ctx != s.ctx {
			// A per-connection context (ConnContext): marked per read, which
			// costs an allocation but keeps idle connections small.
			ctx = s.withInline(c.ctx)
		}
	}
	if c.partial != nil {
		c.partial = append(c.partial, data...)
		data = c.partial
	}
	out := bufs.out[:0]
	defer func() { bufs.out = out[:0] }()
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		err := s.epollWrite(c, out)
		out = out[:0]
		return err
	}
	for len(data) >= 4 {
		size := binary.BigEndian.Uint32(data)
		if size == 0 || size > uint32(s.cfg.MaxFrame) {
			s.cfg.Logger.Warn("closing connection: bad frame size", "size", size, "max", s.cfg.MaxFrame)
			// Replies to the frames before it first, in order.
			if flush() == nil {
				s.epollWrite(c, s.exceptionFrame("", 0, thrift.PROTOCOL_ERROR,
					fmt.Sprintf("frame size %d is not in 1..%d (max-frame); closing connection", size, s.cfg.MaxFrame)))
			}
			s.epollClose(st, c, "bad_frame")
			return false, false, nil
		}
		if uint32(len(data)-4) < size {
			break
		}
		frame := data[4 : 4+size]
		if inline && !s.inlineFrame(frame) {
			handoff = true
			break
		}
		var keep, abandoned, never, deferred bool
		if inline {
			s.istate.w, s.istate.d = nil, nil // only the loop serves inline
		}
		out, keep, abandoned, never, deferred = s.appendProcessMode(ctx, out, frame, inline)
		if abandoned && deferred != (s.istate.d != nil) {
			// A handler bug: ErrDeferred without a Defer (nothing would
			// serve the frame again, and a worker could apply a request
			// already started a second time), or a Defer abandoned
			// otherwise. Not a hand-off: the replies so far, then close.
			s.cfg.Logger.Error("closing connection: a request was deferred without transport.Defer, or deferred and handed off (handler bug)", "deferred", deferred, "defer_called", s.istate.d != nil)
			s.istate.d = nil
			if flush() == nil {
				s.epollClose(st, c, "bad_frame")
			} else {
				s.epollClose(st, c, "error")
			}
			return false, false, nil
		}
		if abandoned && s.istate.d != nil {
			// Started, its reply to come (see ErrDeferred): held like a
			// Hold's, the frame kept to be served again.
			held = &heldReply{c: c, out: bytes.Clone(out), w: deferWait{s.istate.d}, d: s.istate.d, frame: bytes.Clone(frame)}
			s.istate.d = nil
			data = data[4+size:]
			break
		}
		if abandoned {
			handoff = true
			if never {
				c.skipInline = notInlineSkip
			}
			break
		}
		data = data[4+size:]
		if inline && s.istate.w != nil {
			held = &heldReply{c: c, out: bytes.Clone(out), w: s.istate.w}
			s.istate.w = nil
			if !keep {
				// Cannot happen (a panic holds nothing); be safe.
				s.epollClose(st, c, "bad_frame")
				return false, false, nil
			}
			break
		}
		if !keep || len(out) >= maxPendingReplies {
			if err := flush(); err != nil {
				s.epollClose(st, c, "error")
				return false, false, nil
			}
		}
		if !keep {
			s.epollClose(st, c, "bad_frame")
			return false, false, nil
		}
	}
	if held == nil {
		if err := flush(); err != nil {
			s.epollClose(st, c, "error")
			return false, false, nil
		}
	}
	switch {
	case len(data) == 0:
		c.partial = nil
	case c.partial != nil && &data[0] == &c.partial[0]:
		// still the start of the partial buffer: keep it
	default:
		c.partial = append(make([]byte, 0, max(len(data), 64)), data...)
	}
	c.inFrame.Store(c.partial != nil)
	c.queued = handoff || (held != nil && c.partial != nil)
	return true, handoff, held
}

// epollHold parks a connection whose reply waits (see Hold) until its
// Waiter's wait is over; the first connection held on a Waiter registers
// the callback that finishes all of them (epollHoldDone).
func (s *Server) epollHold(st *epollState, h *heldReply) {
	until := deferUntil(h.d) // (the Deferred's code, not under holdMu)
	st.holdMu.Lock()
	g, waiting := st.holds[h.w]
	if !waiting {
		g = &holdGroup{since: time.Now().UnixNano(), until: until}
		st.holds[h.w] = g
	}
	g.hs = append(g.hs, h)
	st.holdMu.Unlock()
	if !waiting {
		// (Called without holdMu: OnDone may call back at once. A callback
		// that finds no group — it expired, or an earlier callback took it
		// and this hold started a new one — has nothing to do.)
		w := h.w
		h.w.OnDone(func() { s.epollHoldDone(st, w) })
	}
}

// deferUntil is when a hold of deferred request d (nil: a held reply)
// may expire at the earliest by d's own deadline: unix nanoseconds of
// the deadline plus deferGrace, 0 if d is nil or has no deadline.
func deferUntil(d Deferred) int64 {
	if d == nil {
		return 0
	}
	dl, ok := d.Deadline()
	if !ok || dl.IsZero() {
		return 0
	}
	return dl.Add(deferGrace).UnixNano()
}

// epollHoldDone finishes the connections held on w, now that its wait is
// over, on the caller's goroutine (the one that ended the wait): each
// gets its replies in one write that does not wait, or is closed if
// w.Err() reports an error. A reply the socket cannot take at once is
// finished by a goroutine of its own (epollHoldFinish).
func (s *Server) epollHoldDone(st *epollState, w Waiter) {
	st.holdMu.Lock()
	g := st.holds[w]
	delete(st.holds, w)
	st.holdMu.Unlock()
	if g == nil {
		return
	}
	err := w.Err()
	for _, h := range g.hs {
		if err != nil {
			s.cfg.Logger.Warn("closing connection: its held reply cannot be sent", "err", err)
			s.epollClose(st, h.c, "error")
			continue
		}
		if h.d != nil {
			s.epollDeferDone(st, h)
			continue
		}
		s.epollHoldWrite(st, h)
	}
}

// epollHoldWrite writes a held connection's replies with one write that
// does not wait, and lets the connection go on; a reply the socket cannot
// take at once is finished by a goroutine of its own (epollHoldFinish).
func (s *Server) epollHoldWrite(st *epollState, h *heldReply) {
	n, werr := unix.Write(h.c.fd, h.out)
	switch {
	case werr == nil && n == len(h.out):
		s.cfg.Observer.BytesOut(n)
		s.epollHoldNext(st, h)
	case werr == nil, errors.Is(werr, unix.EAGAIN), errors.Is(werr, unix.EINTR):
		// The socket took part of it (or none): the rest may have to
		// wait for the client, which the caller must not.
		if n > 0 {
			s.cfg.Observer.BytesOut(n)
			h.out = h.out[n:]
		}
		s.wg.Add(1)
		go s.epollHoldFinish(st, h)
	default:
		s.epollClose(st, h.c, "error")
	}
}

// epollDeferDone finishes a connection whose deferred request (see
// ErrDeferred) is done, on the goroutine that finished it: its reply — the
// Deferred's own (DeferredAnswer), else the request's frame served again
// with a context carrying the Deferred (the handler answers from it,
// without waiting) — is appended to the replies before it, and all of
// them are written as a held reply's are.
func (s *Server) epollDeferDone(st *epollState, h *heldReply) {
	c := h.c
	if s.closing.Load() {
		s.epollClose(st, c, "shutdown")
		return
	}
	if a, ok := h.d.(DeferredAnswer); ok {
		if out, ok := s.appendAnswer(c.ctx, h.out, h.frame, a); ok {
			h.out, h.frame, h.d = out, nil, nil
			s.epollHoldWrite(st, h)
			return
		}
	}
	ctx := context.WithValue(c.ctx, deferredKey{}, h.d)
	out, keep, _, _, _ := s.appendProcessMode(ctx, h.out, h.frame, false)
	h.out, h.frame, h.d = out, nil, nil
	if !keep {
		// The handler panicked: its exception if the socket takes it at
		// once (this goroutine must not wait), then the connection closes.
		unix.Write(c.fd, out)
		s.epollClose(st, c, "bad_frame")
		return
	}
	s.epollHoldWrite(st, h)
}

// epollHoldFinish writes the rest of a held connection's replies, waiting
// for the socket as epollWrite does, and lets the connection go on.
func (s *Server) epollHoldFinish(st *epollState, h *heldReply) {
	defer s.wg.Done()
	if err := s.epollWrite(h.c, h.out); err != nil {
		s.epollClose(st, h.c, "error")
		return
	}
	s.epollHoldNext(st, h)
}

// epollHoldNext lets a connection whose held replies are written go on:
// to a worker if input is waiting, else released.
func (s *Server) epollHoldNext(st *epollState, h *heldReply) {
	c := h.c
	switch {
	case s.closing.Load():
		s.epollClose(st, c, "shutdown")
	case c.queued || h.more || !c.release():
		s.epollDispatch(st, c)
	}
}

// epollExpireHolds closes the connections whose replies have been held
// longer than the frame timeout (a wait that does not end), and those
// whose deferred request has waited longer than the frame timeout and
// past its own deadline plus deferGrace (a Deferred never done; once
// closing, the frame timeout alone: see holdGroup.expired); a callback
// that comes later finds nothing to do.
func (s *Server) epollExpireHolds(st *epollState, now int64) {
	ft := s.frameTimeout.Load()
	closing := s.closing.Load()
	var expired []*holdGroup
	st.holdMu.Lock()
	for w, g := range st.holds {
		if g.expired(now, ft, closing) {
			expired = append(expired, g)
			delete(st.holds, w)
		}
	}
	st.holdMu.Unlock()
	for _, g := range expired {
		for _, h := range g.hs {
			switch {
			case h.d == nil:
				s.cfg.Logger.Warn("closing connection: a held reply waited longer than the frame timeout")
			case closing:
				s.cfg.Logger.Warn("closing connection: a deferred request waited longer than the frame timeout while shutting down")
			default:
				s.cfg.Logger.Warn("closing connection: a deferred request waited longer than the frame timeout and past its deadline plus grace", "grace", deferGrace)
			}
			s.epollClose(st, h.c, "error")
		}
	}
}

// epollWrite writes b completely, waiting (up to the frame timeout) while
// the socket buffer is full.
func (s *Server) epollWrite(c *econn, b []byte) error {
	total := len(b)
	var deadline time.Time // set when the socket buffer first fills
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		switch {
		case err == nil:
			b = b[n:]
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			if deadline.IsZero() {
				deadline = time.Now().Add(time.Duration(s.frameTimeout.Load()))
			}
			wait := time.Until(deadline)
			if wait <= 0 {
				return errors.New("transport: write timed out")
			}
			pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(pfd, int(wait.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
				return err
			}
		default:
			return err
		}
	}
	s.cfg.Observer.BytesOut(total)
	return nil
}

// epollSweep closes connections idle longer than the idle timeout, and
// those stuck in the middle of a frame longer than the frame timeout.
func (s *Server) epollSweep(st *epollState) {
	defer s.wg.Done()
	every := min(max(s.cfg.IdleTimeout/4, 10*time.Millisecond), 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var victims []*econn
	for range t.C {
		if s.closing.Load() {
			s.epollShutdown(st)
			return
		}
		now := time.Now().UnixNano()
		s.epollExpireHolds(st, now)
		idle := int64(s.cfg.IdleTimeout)
		ft := s.frameTimeout.Load()
		victims = victims[:0]
		st.mu.RLock()
		for _, c := range st.conns {
			if c == nil {
				continue
			}
			age := now - c.lastActive.Load()
			if age > idle || (age > ft && c.inFrame.Load()) {
				victims = append(victims, c)
			}
		}
		st.mu.RUnlock()
		for _, c := range victims {
			if c.own() {
				reason := "idle"
				if c.inFrame.Load() {
					reason = "bad_frame"
				}
				s.epollClose(st, c, reason)
			}
		}
	}
}

// epollShutdown closes every connection not being served; served ones
// close themselves after their request.
func (s *Server) epollShutdown(st *epollState) {
	for {
		st.mu.RLock()
		var open []*econn
		for _, c := range st.conns {
			if c != nil {
				open = append(open, c)
			}
		}
		st.mu.RUnlock()
		if len(open) == 0 {
			break
		}
		s.epollExpireHolds(st, time.Now().UnixNano())
		for _, c := range open {
			if c.own() {
				s.epollClose(st, c, "shutdown")
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	st.closeEpoll() // (wakes the event loop if it waits in the poller)
}

// closeEpoll releases the epoll instance: through epf when it is
// registered with Go's poller (which wakes a loop waiting there and
// closes the descriptor once no call through erc runs), else directly.
func (st *epollState) closeEpoll() {
	if st.epf != nil {
		st.epf.Close()
		return
	}
	unix.Close(st.epfd)
}
