//go:build linux

package bench

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// The event-loop client (--io loop). One goroutine drives every connection
// through an epoll instance of its own, as redis-benchmark does: per
// request one write and one read (of the whole reply; the socket is
// watched level-triggered, so no read has to end in EAGAIN), and one
// epoll_wait per wake for all the connections that are ready. The
// goroutine client (--io goroutine) spends, per request, a second read
// that ends in EAGAIN, a park and an unpark of the worker goroutine and a
// share of Go's network poller, and on this project's 2-core machine it
// used about as much CPU as the node it measured: the client then takes CPU
// from the server under test and its scheduling delays count in the
// latencies.
//
// Semantics are the goroutine client's: the same per-connection key and
// value sequences (same seeds), the closed loop sends a connection's next
// request as soon as its reply is in, the open loop sends on the same
// staggered schedule and measures from the intended send time; a typed
// exception counts every command of its request as failed; a connection
// that fails (an I/O or decoding error, a reply later than --timeout) is
// closed, its request counted as an error, and it is dialled again for the
// next request (in the closed loop after 10 ms, so that a node refusing
// everything does not make the loop spin). Ordering rule of the loop: a reply is timed when its read
// returns (before it is decoded), and the next request of that connection
// (closed loop) leaves after the reply is recorded.

const loopSupported = true

// loopConn is one connection of the event loop.
type loopConn struct {
	idx    int // in eventLoop.conns; the epoll event's data
	sa     unix.Sockaddr
	fd     int // -1: not connected
	gen    *Generator
	cmds   []core.Command
	w      wireCmds // the wire form of its requests
	seq    int32
	busy   bool      // a request is in flight
	read   bool      // the request in flight is a read
	origin time.Time // its latency origin (intended send time in open loop)
	sentAt time.Time // when it was written (for --timeout)
	next   time.Time // when the next request is due (the wait heap's key)
	hidx   int       // index in the wait heap; -1 when not in it
	in     []byte    // bytes of a reply not yet complete
	out    []byte    // the encoded request
}

// waitHeap orders the connections waiting for a time (open loop: the next
// slot; both loops: a redial back-off) by that time.
type waitHeap []*loopConn

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h waitHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *waitHeap) Push(x any) { c := x.(*loopConn); c.hidx = len(*h); *h = append(*h, c) }
func (h *waitHeap) Pop() any {
	old := *h
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	c.hidx = -1
	return c
}

// eventLoop is the state of one --io loop run.
type eventLoop struct {
	cfg      Config
	epfd     int
	conns    []*loopConn
	codec    *transport.ClientCodec // nil: RESP (cfg.Protocol resp)
	opts     *gen.RequestOptions
	st       *workerStats
	wait     waitHeap
	inFlight int
	buf      []byte // the read buffer, shared by every connection
	open     bool
	interval time.Duration // open loop: time between a connection's requests
	end      time.Time
	stopping bool // past the end or cancelled: send nothing more
}

// redialBackoff is how long a connection whose dial failed waits before
// the next attempt.
const redialBackoff = 10 * time.Millisecond

// loopReadBuffer is the event loop's read buffer; a reply up to this size
// takes one read.
const loopReadBuffer = 64 << 10

// newEventLoop resolves cfg's addresses and connects cfg.Clients sockets,
// connection i to address i mod n (as the goroutine client does).
func newEventLoop(cfg Config, mix Mix, keys KeyChooser) (*eventLoop, error) {
	var codec *transport.ClientCodec
	if cfg.Protocol != ProtocolRESP {
		p, err := transport.ParseProtocol(cfg.Protocol)
		if err != nil {
			return nil, fmt.Errorf("--protocol: %w", err)
		}
		codec = transport.NewClientCodec(p, 0)
	}
	var sas []unix.Sockaddr
	for _, a := range splitAddrs(cfg.Addr) {
		sa, err := resolveSockaddr(a)
		if err != nil {
			return nil, err
		}
		sas = append(sas, sa)
	}
	if len(sas) == 0 {
		return nil, errors.New("--addr: no address")
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: epoll_create: %w", err)
	}
	l := &eventLoop{cfg: cfg, epfd: epfd, codec: codec, opts: cfg.requestOptions(),
		buf: make([]byte, loopReadBuffer)}
	for i := range cfg.Clients {
		c := &loopConn{idx: i, sa: sas[i%len(sas)], fd: -1, hidx: -1,
			gen:  NewGenerator(mix, keys, cfg.ValueSize, cfg.Seed*1_000_003+uint64(i)),
			cmds: make([]core.Command, cfg.Batch)}
		l.conns = append(l.conns, c)
		if err := l.dial(c); err != nil {
			l.close()
			return nil, fmt.Errorf("bench: connection %d of %d: %w", i+1, cfg.Clients, err)
		}
	}
	return l, nil
}

// resolveSockaddr resolves a HOST:PORT once, for every (re)dial.
func resolveSockaddr(addr string) (unix.Sockaddr, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--addr %s: %w", addr, err)
	}
	if ip4 := ta.IP.To4(); ip4 != nil {
		sa := &unix.SockaddrInet4{Port: ta.Port}
		copy(sa.Addr[:], ip4)
		return sa, nil
	}
	sa := &unix.SockaddrInet6{Port: ta.Port}
	copy(sa.Addr[:], ta.IP.To16())
	return sa, nil
}

// dial connects c's socket (non-blocking, TCP_NODELAY) within the
// configured timeout and registers it.
func (l *eventLoop) dial(c *loopConn) error {
	family := unix.AF_INET
	if _, ok := c.sa.(*unix.SockaddrInet6); ok {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	err = unix.Connect(fd, c.sa)
	if errors.Is(err, unix.EINPROGRESS) || errors.Is(err, unix.EINTR) {
		if err = pollFd(fd, unix.POLLOUT, l.cfg.Timeout); err == nil {
			var soerr int
			if soerr, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err == nil && soerr != 0 {
				err = unix.Errno(soerr)
			}
		}
	}
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("connect: %w", err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.idx)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	c.fd = fd
	c.in = c.in[:0]
	return nil
}

// pollFd waits up to d for events on fd.
func pollFd(fd int, events int16, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return errors.New("timed out")
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, int(wait.Milliseconds())+1)
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return err
		case n > 0:
			return nil
		}
	}
}

// close closes every socket and the epoll instance.
func (l *eventLoop) close() {
	for _, c := range l.conns {
		if c.fd >= 0 {
			unix.Close(c.fd)
			c.fd = -1
		}
	}
	unix.Close(l.epfd)
}

// run drives the connections from start until end (then waits for the
// requests in flight, at most --timeout), recording into st; it returns
// the open loop's missed operations, as worker.openLoop counts them.
func (l *eventLoop) run(ctx context.Context, start, end time.Time, st *workerStats) (missed int64) {
	l.st, l.end = st, end
	cfg := l.cfg
	l.open = cfg.Rate > 0
	now := time.Now()
	for i, c := range l.conns {
		if l.open {
			// The goroutine client's schedule (openSlot).
			var offset time.Duration
			offset, l.interval = openSlot(cfg, i)
			c.next = start.Add(offset)
			heap.Push(&l.wait, c)
		} else {
			l.send(c, now, now)
		}
	}
	events := make([]unix.EpollEvent, 256)
	lastSweep := now
	for {
		now = time.Now()
		if ctx.Err() != nil {
			return 0 // cancelled: the requests in flight are not waited for
		}
		l.stopping = !now.Before(end)
		for !l.stopping && l.wait.Len() > 0 && !l.wait[0].next.After(now) {
			c := heap.Pop(&l.wait).(*loopConn)
			l.due(c, now)
		}
		if l.stopping && (l.inFlight == 0 || now.Sub(end) > cfg.Timeout) {
			break
		}
		if now.Sub(lastSweep) >= 100*time.Millisecond {
			l.sweep(now)
			lastSweep = now
		}
		wait := 100 * time.Millisecond
		if !l.stopping {
			wait = min(wait, end.Sub(now))
			if l.wait.Len() > 0 {
				wait = min(wait, l.wait[0].next.Sub(now))
			}
		}
		n, err := epollWait(l.epfd, events, max(wait, 0))
		if err != nil && !errors.Is(err, unix.EINTR) {
			// Cannot happen with a valid epoll descriptor; fail loudly
			// rather than spin.
			panic(fmt.Sprintf("bench: epoll_wait: %v", err))
		}
		for k := range n {
			l.readable(l.conns[events[k].Fd])
		}
	}
	if l.open {
		for _, c := range l.conns {
			missed += missedOps(c.next, end, l.interval, cfg.Batch)
		}
	}
	return missed
}

// due sends the request of a connection whose time has come: the open
// loop's slot (timed from the slot), or a closed-loop redial after a
// back-off (timed from now).
func (l *eventLoop) due(c *loopConn, now time.Time) {
	if !l.open {
		l.send(c, now, now)
		return
	}
	if !c.next.Before(l.end) {
		return // no slot left before the end
	}
	origin := c.next
	c.next = c.next.Add(l.interval)
	l.send(c, origin, now)
}

// idle decides what a connection does next after a reply at now: the
// closed loop sends at once, the open loop waits for its next slot (sends
// at once if it is late).
func (l *eventLoop) idle(c *loopConn, now time.Time) {
	if l.stopping || !now.Before(l.end) || c.hidx >= 0 {
		return
	}
	if !l.open {
		l.send(c, now, now)
		return
	}
	if !c.next.After(now) {
		l.due(c, now)
		return
	}
	if c.next.Before(l.end) {
		heap.Push(&l.wait, c)
	}
}

// send generates, encodes and writes c's next request, timed from origin.
func (l *eventLoop) send(c *loopConn, origin, now time.Time) {
	if c.fd < 0 {
		if err := l.dial(c); err != nil {
			l.st.record(false, len(c.cmds), 0, 0, err)
			l.retry(c, now)
			return
		}
	}
	// (c.cmds' previous batch was encoded into c.out, nothing else refers
	// to it: its storage is reused.)
	read := c.gen.BatchReuse(c.cmds)
	c.seq++
	var err error
	switch {
	case l.codec == nil:
		c.out = appendRESP(c.out[:0], c.cmds)
	case len(c.cmds) == 1:
		c.out, err = l.codec.AppendCall(c.out[:0], c.seq, l.opts, c.w.single(c.cmds[0]))
	default:
		c.out, err = l.codec.AppendExecute(c.out[:0], c.seq, l.opts, c.w.batch(c.cmds))
	}
	c.busy, c.read, c.origin, c.sentAt = true, read, origin, now
	l.inFlight++
	if err == nil {
		err = l.write(c.fd, c.out)
	}
	if cap(c.out) > 64<<10 {
		c.out = nil // do not keep a large request's buffer
	}
	if err != nil {
		l.fail(c, err, now)
	}
}

// write writes b to fd completely, waiting (up to the timeout) while the
// socket buffer is full.
func (l *eventLoop) write(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		switch {
		case err == nil:
			b = b[n:]
		case errors.Is(err, unix.EINTR):
		case errors.Is(err, unix.EAGAIN):
			if err := pollFd(fd, unix.POLLOUT, l.cfg.Timeout); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		default:
			return fmt.Errorf("write: %w", err)
		}
	}
	return nil
}

// readable reads what c's socket holds and finishes every complete reply.
func (l *eventLoop) readable(c *loopConn) {
	for c.fd >= 0 {
		n, err := unix.Read(c.fd, l.buf)
		now := time.Now()
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return
		case err != nil:
			l.fail(c, fmt.Errorf("read: %w", err), now)
			return
		case n == 0:
			l.fail(c, io.ErrUnexpectedEOF, now)
			return
		}
		data := l.buf[:n]
		if len(c.in) > 0 {
			c.in = append(c.in, data...)
			data = c.in
		}
		for {
			var (
				fl, failed int
				err        error
			)
			if l.codec == nil {
				// RESP has no frame length: a request's replies (one per
				// command of the pipeline) are its frame.
				fl, failed, err = respReplies(data, len(c.cmds))
			} else {
				fl, err = l.codec.FrameLen(data)
			}
			if err != nil {
				l.fail(c, err, now)
				return
			}
			if fl == 0 {
				break
			}
			frame := data[:fl]
			data = data[fl:]
			fd := c.fd
			if l.codec == nil {
				l.respReply(c, failed, now)
			} else {
				l.reply(c, frame[4:], now)
			}
			if c.fd != fd {
				return // failed and closed: the rest was the old socket's
			}
		}
		c.in = append(c.in[:0], data...) // (data may overlap c.in: append copies forward)
		if cap(c.in) > 64<<10 && len(c.in) == 0 {
			c.in = nil
		}
		if n < len(l.buf) {
			return // drained (level-triggered: more data wakes the loop again)
		}
	}
}

// reply finishes c's request with its reply frame (arrived at now) and
// lets the connection go on.
func (l *eventLoop) reply(c *loopConn, frame []byte, now time.Time) {
	if !c.busy {
		l.fail(c, errors.New("bench: a reply with no request in flight"), now)
		return
	}
	n := len(c.cmds)
	failed, err := l.decode(c, frame)
	switch {
	case err != nil && isException(err):
		// A typed answer from the node: the connection is fine.
		l.st.record(c.read, n, n, now.Sub(c.origin), nil)
	case err != nil && errors.Is(err, errReplyCount):
		l.st.record(c.read, n, 0, 0, err)
	case err != nil:
		l.fail(c, err, now)
		return
	default:
		l.st.record(c.read, n, failed, now.Sub(c.origin), nil)
	}
	c.busy = false
	l.inFlight--
	l.idle(c, now)
}

// decode decodes c's reply frame and returns how many of its commands
// failed: a batch's reply is only counted (transport.CountExecute builds
// no reply per command unless a reply nests — an array, an error, siblings
// — or the node answered with an exception: the load generator shares the
// node's cores). A
// reply with another number of replies than commands is an error wrapping
// errReplyCount.
func (l *eventLoop) decode(c *loopConn, frame []byte) (failed int, err error) {
	n := len(c.cmds)
	if n == 1 {
		resp, err := l.codec.DecodeCall(frame, c.seq)
		if err != nil {
			return 0, err
		}
		return countFailed(resp, n)
	}
	replies, failed, err := l.codec.CountExecute(frame, c.seq)
	if err != nil {
		return 0, err
	}
	if replies != n {
		return 0, fmt.Errorf("%w: %d replies to %d commands", errReplyCount, replies, n)
	}
	return failed, nil
}

// respReply finishes c's request with its RESP replies, failed of them
// errors (arrived at now), and lets the connection go on.
func (l *eventLoop) respReply(c *loopConn, failed int, now time.Time) {
	if !c.busy {
		l.fail(c, errors.New("bench: a reply with no request in flight"), now)
		return
	}
	l.st.record(c.read, len(c.cmds), failed, now.Sub(c.origin), nil)
	c.busy = false
	l.inFlight--
	l.idle(c, now)
}

// fail records c's request in flight (if any) as failed, closes the
// connection and lets it go on (it is dialled again for its next request).
func (l *eventLoop) fail(c *loopConn, err error, now time.Time) {
	if c.busy {
		l.st.record(c.read, len(c.cmds), 0, 0, err)
		c.busy = false
		l.inFlight--
	}
	if c.fd >= 0 {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
		unix.Close(c.fd)
		c.fd = -1
	}
	c.in = c.in[:0]
	l.retry(c, now)
}

// retry schedules a connection's next request after a failure: the open
// loop's next slot (at once if it is late), the closed loop's after
// redialBackoff. Never at once from here: a node that fails every request
// at once must not make the loop spin.
func (l *eventLoop) retry(c *loopConn, now time.Time) {
	if l.stopping || c.hidx >= 0 {
		return
	}
	if !l.open {
		c.next = now.Add(redialBackoff)
		heap.Push(&l.wait, c)
		return
	}
	if c.next.Before(l.end) {
		heap.Push(&l.wait, c)
	}
}

// sweep fails the requests in flight for longer than the timeout.
func (l *eventLoop) sweep(now time.Time) {
	for _, c := range l.conns {
		if c.busy && now.Sub(c.sentAt) > l.cfg.Timeout {
			l.fail(c, fmt.Errorf("bench: no reply within %v", l.cfg.Timeout), now)
		}
	}
}

// epollWait is epoll_pwait2: epoll_wait with a nanosecond timeout (the
// open loop's slots are finer than epoll_wait's milliseconds).
func epollWait(epfd int, events []unix.EpollEvent, d time.Duration) (int, error) {
	ts := unix.NsecToTimespec(int64(d))
	n, _, e := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
	if e == unix.ENOSYS {
		// Before Linux 5.11: round up to milliseconds.
		return unix.EpollWait(epfd, events, int((d+time.Millisecond-1)/time.Millisecond))
	}
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
