//go:build linux

package transport

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// deferHandler answers GET x with x; DEFER x, on the event loop, is
// deferred until gate closes (DEFERNOW x: finished before the transport
// registers its callback) and answered "done:x" when served again; served
// anywhere else it answers "worker:x", which the test does not expect.
// BADDEFER x on the loop returns ErrDeferred without calling Defer. A
// request's deadline_ms, if set, is its Deferred's deadline.
type deferHandler struct {
	stubHandler
	gate chan struct{}
	mu   sync.Mutex
	log  []string // "DEFER a2 inline" / "... again" / "GET a3 worker"
}

// gateDeferred is a Deferred done when gate closes (its callback then runs
// on a goroutine of its own), or at once (now); a pointer, one per request,
// as Deferred asks. deadline: the request's, zero for none.
type gateDeferred struct {
	gate     chan struct{}
	now      bool
	deadline time.Time
}

var _ Deferred = (*gateDeferred)(nil)

func (d *gateDeferred) Deadline() (time.Time, bool) { return d.deadline, !d.deadline.IsZero() }

func (d *gateDeferred) OnDone(f func()) {
	if d.now {
		f()
		return
	}
	go func() { <-d.gate; f() }()
}

func (h *deferHandler) Call(ctx context.Context, o *gen.RequestOptions, c *gen.Command) (*gen.ExecuteResponse, error) {
	cc, err := CommandToCore(c)
	if err != nil {
		return nil, &gen.InvalidArgument{Message: err.Error()}
	}
	arg := string(cc.Args[0])
	reply := arg
	where := "worker"
	switch {
	case DeferredOf(ctx) != nil:
		where, reply = "again", "done:"+arg
	case Inline(ctx):
		where = "inline"
		if cc.Name == "BADDEFER" { // the bug: ErrDeferred without Defer
			h.note(cc.Name, arg, where)
			return nil, ErrDeferred
		}
		if cc.Name == "DEFER" || cc.Name == "DEFERNOW" || cc.Name == "ANSWER" || cc.Name == "DECLINE" {
			g := &gateDeferred{gate: h.gate, now: cc.Name == "DEFERNOW"}
			if ms := o.GetDeadlineMs(); ms > 0 {
				g.deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
			}
			var d Deferred = g
			if cc.Name == "ANSWER" || cc.Name == "DECLINE" {
				d = &answerDeferred{gateDeferred: g, h: h, arg: arg, answer: cc.Name == "ANSWER"}
			}
			if !Defer(ctx, d) {
				return nil, errors.New("Defer refused an inline request")
			}
			h.note(cc.Name, arg, where)
			return nil, ErrDeferred
		}
	case cc.Name != "GET":
		reply = "worker:" + arg
	}
	h.note(cc.Name, arg, where)
	return &gen.ExecuteResponse{Replies: []*gen.Reply{ReplyFromCore(core.Bulk([]byte(reply)), nil)}}, nil
}

// answerDeferred is a gateDeferred that writes its own reply
// ("answered:ARG", DeferredAnswer), or declines to (answer false: the
// frame is then served again).
type answerDeferred struct {
	*gateDeferred
	h      *deferHandler
	arg    string
	answer bool
}

var _ DeferredAnswer = (*answerDeferred)(nil)

func (d *answerDeferred) WriteAnswer(ctx context.Context, name string, seq int32, oprot thrift.TProtocol) bool {
	if !d.answer {
		d.h.note("DECLINE", d.arg, "declined")
		return false
	}
	d.h.note("ANSWER", d.arg, "answered")
	r := &gen.DialKVCallResult{Success: &gen.ExecuteResponse{Replies: []*gen.Reply{ReplyFromCore(core.Bulk([]byte("answered:"+d.arg)), nil)}}}
	oprot.WriteMessageBegin(ctx, name, thrift.REPLY, seq)
	r.Write(ctx, oprot)
	oprot.WriteMessageEnd(ctx)
	oprot.Flush(ctx)
	return true
}

func (h *deferHandler) note(name, arg, where string) {
	h.mu.Lock()
	h.log = append(h.log, fmt.Sprintf("%s %s %s", name, arg, where))
	h.mu.Unlock()
}

// TestInlineDefer: a request deferred on the event loop (ErrDeferred) is
// answered once its Deferred is done, by serving its frame again, in order
// with the replies before it (same read) and after it (served by a worker
// once the deferred reply is written); a Deferred done before the
// transport registers its callback is answered at once; a new connection
// is served on the loop meanwhile.
func TestInlineDefer(t *testing.T) {
	h := &deferHandler{gate: make(chan struct{})}
	srv := NewServer(gen.NewDialKVProcessor(h), ServerConfig{Mode: ModeEpoll, InlineMethods: []string{"call"}})
	addr := serveEpoll(t, srv)
	a := dialSend(t, addr, callFrame(Binary, 1, "GET", "a1"), callFrame(Binary, 2, "DEFER", "a2"), callFrame(Binary, 3, "GET", "a3"))
	waitLogged(t, &h.mu, &h.log, 2, 20*time.Second)
	// a1's reply waits with the deferred one (one write for the read).
	a.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := a.Read(make([]byte, 1)); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a deferred connection answered before its request was done: %d bytes, %v", n, err)
	}
	expectCallReplies(t, dialSend(t, addr, callFrame(Binary, 1, "DEFERNOW", "b1"), callFrame(Binary, 2, "GET", "b2")), "done at once", "done:b1", "b2")
	expectCallReplies(t, dialSend(t, addr, callFrame(Binary, 1, "GET", "c1")), "a new connection meanwhile", "c1")
	close(h.gate)
	expectCallReplies(t, a, "deferred", "a1", "done:a2", "a3")
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range []string{"GET a1 inline", "DEFER a2 inline", "DEFER a2 again", "GET a3 worker", "DEFERNOW b1 inline", "DEFERNOW b1 again", "GET c1 inline"} {
		found := false
		for _, l := range h.log {
			found = found || l == w
		}
		if !found {
			t.Errorf("%q not served; served: %s", w, strings.Join(h.log, "; "))
		}
	}
}

// TestInlineDeferAnswer: a deferred request whose Deferred writes its own
// reply (DeferredAnswer) is answered with it, in order with the replies
// before and after it, and its frame is not served again; one that
// declines is served again as before.
func TestInlineDeferAnswer(t *testing.T) {
	h := &deferHandler{gate: make(chan struct{})}
	srv := NewServer(gen.NewDialKVProcessor(h), ServerConfig{Mode: ModeEpoll, InlineMethods: []string{"call"}})
	addr := serveEpoll(t, srv)
	a := dialSend(t, addr, callFrame(Binary, 1, "GET", "a1"), callFrame(Binary, 2, "ANSWER", "a2"), callFrame(Binary, 3, "GET", "a3"))
	c := dialSend(t, addr, callFrame(Binary, 1, "DECLINE", "c1"), callFrame(Binary, 2, "GET", "c2"))
	waitLogged(t, &h.mu, &h.log, 3, 20*time.Second)
	close(h.gate)
	expectCallReplies(t, a, "answered", "a1", "answered:a2", "a3")
	expectCallReplies(t, c, "declined", "done:c1", "c2")
	h.mu.Lock()
	got := strings.Join(h.log, "; ")
	h.mu.Unlock()
	for _, l := range []string{"ANSWER a2 again"} {
		if strings.Contains(got, l) {
			t.Errorf("%q: a Deferred that answers itself was served again; served: %s", l, got)
		}
	}
	for _, l := range []string{"ANSWER a2 answered", "DECLINE c1 declined", "DECLINE c1 again"} {
		if !strings.Contains(got, l) {
			t.Errorf("%q missing; served: %s", l, got)
		}
	}
}

// TestInlineDeferWithoutDefer: a handler that returns ErrDeferred without
// calling Defer is a bug the transport does not paper over: the replies
// before it are written and the connection is closed; the request is not
// handed to a worker (which would serve it a second time).
func TestInlineDeferWithoutDefer(t *testing.T) {
	h := &deferHandler{gate: make(chan struct{})}
	srv := NewServer(gen.NewDialKVProcessor(h), ServerConfig{Mode: ModeEpoll, InlineMethods: []string{"call"}})
	nc := dialSend(t, serveEpoll(t, srv), callFrame(Binary, 1, "GET", "a1"), callFrame(Binary, 2, "BADDEFER", "a2"), callFrame(Binary, 3, "GET", "a3"))
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := readFrame(nc, nil, 1<<20); err != nil {
		t.Fatalf("reply to the request before the bad one: %v", err)
	}
	if frame, err := readFrame(nc, nil, 1<<20); err == nil {
		t.Fatalf("a reply (%d bytes) after a request deferred without Defer; want the connection closed", len(frame))
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open 20 s after a request deferred without Defer")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := strings.Join(h.log, "; "); got != "GET a1 inline; BADDEFER a2 inline" {
		t.Fatalf("served: %s; want GET a1 inline; BADDEFER a2 inline", got)
	}
}

// TestInlineDeferExpires: a deferred request whose Deferred is never done
// does not hold its connection forever: the connection is closed once the
// frame timeout has passed (the late callback finds nothing to do), and
// Shutdown returns with one still deferred, within the frame timeout even
// though its deadline is 60 s away.
func TestInlineDeferExpires(t *testing.T) {
	h := &deferHandler{gate: make(chan struct{})}
	t.Cleanup(func() { close(h.gate) }) // after Shutdown: the late callbacks
	const ft = 200 * time.Millisecond
	srv := NewServer(gen.NewDialKVProcessor(h), ServerConfig{Mode: ModeEpoll, InlineMethods: []string{"call"}, FrameTimeout: ft})
	addr := serveEpoll(t, srv)
	a := dialSend(t, addr, callFrame(Binary, 1, "DEFER", "a1"))
	start := time.Now()
	a.SetReadDeadline(start.Add(5 * time.Second))
	if n, err := a.Read(make([]byte, 1)); n > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a deferred request never done: read %d bytes, %v; want the connection closed after the frame timeout %v", n, err, ft)
	}
	if d := time.Since(start); d < ft/2 {
		t.Fatalf("connection closed after %v, before the frame timeout %v", d, ft)
	}
	b := dialSend(t, addr, callFrameDeadline(Binary, 1, "DEFER", "b1", 60_000))
	waitLogged(t, &h.mu, &h.log, 2, 5*time.Second) // b1 deferred
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return with a request deferred for ever")
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := b.Read(make([]byte, 1)); n > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deferred connection after Shutdown: read %d bytes, %v; want it closed", n, err)
	}
}

// callFrameDeadline is callFrame with deadline_ms set to ms.
func callFrameDeadline(p Protocol, seq int32, name, arg string, ms int64) []byte {
	return encodeMessage(p, "call", seq, &gen.DialKVCallArgs{Opts: &gen.RequestOptions{DeadlineMs: &ms}, Cmd: CommandFromCore(core.Cmd(name, arg))})
}

// TestInlineDeferDeadline: a deferred request waits for its Deferred until
// the later of the frame timeout and its own deadline plus deferGrace: one
// with a deadline beyond the frame timeout is answered when its Deferred is
// done after the frame timeout (the connection used to be closed at the
// frame timeout), and closed after its deadline plus deferGrace if it is
// never done; one without a deadline is closed at the frame timeout.
func TestInlineDeferDeadline(t *testing.T) {
	const (
		ft       = 200 * time.Millisecond
		deadline = time.Second
	)
	for _, tc := range []struct {
		name     string
		ms       int64         // deadline_ms; 0: none
		doneAt   time.Duration // when the Deferred is done; 0: never
		minClose time.Duration // closed no earlier (with no reply)
		maxClose time.Duration // closed by then
	}{
		{name: "done after the frame timeout, before the deadline", ms: deadline.Milliseconds(), doneAt: 3 * ft},
		{name: "never done, with a deadline", ms: deadline.Milliseconds(), minClose: deadline + deferGrace, maxClose: deadline + deferGrace + 5*time.Second},
		{name: "never done, without a deadline", minClose: ft, maxClose: deadline + deferGrace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &deferHandler{gate: make(chan struct{})}
			var once sync.Once
			open := func() { once.Do(func() { close(h.gate) }) }
			t.Cleanup(open) // after Shutdown (registered later, run first): the late callbacks
			srv := NewServer(gen.NewDialKVProcessor(h), ServerConfig{Mode: ModeEpoll, InlineMethods: []string{"call"}, FrameTimeout: ft})
			addr := serveEpoll(t, srv)
			start := time.Now()
			nc := dialSend(t, addr, callFrameDeadline(Binary, 1, "DEFER", "a1", tc.ms))
			waitLogged(t, &h.mu, &h.log, 1, 5*time.Second) // deferred
			if tc.doneAt > 0 {
				time.Sleep(time.Until(start.Add(tc.doneAt)))
				// (Past the frame timeout and a few sweeps: the sweeper
				// ticks every 100 ms with the default idle timeout.)
				open()
				expectCallReplies(t, nc, "done after the frame timeout", "done:a1")
				return
			}
			nc.SetReadDeadline(start.Add(tc.maxClose))
			n, err := nc.Read(make([]byte, 1))
			d := time.Since(start)
			if n > 0 || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("a deferred request never done: read %d bytes, %v after %v; want the connection closed within %v", n, err, d, tc.maxClose)
			}
			if d < tc.minClose {
				t.Fatalf("connection closed after %v, before %v", d, tc.minClose)
			}
		})
	}
}

// TestHoldGroupExpired: a hold expires once it has waited longer than the
// frame timeout, and a deferred request with a deadline (until) also not
// before its deadline plus grace — an earlier deadline does not shorten the
// frame timeout — except while the server closes.
func TestHoldGroupExpired(t *testing.T) {
	const ft, since = int64(10 * time.Second), int64(1000 * time.Second)
	for _, tc := range []struct {
		name    string
		until   int64 // 0: a held reply, or a deferred request without a deadline
		now     int64
		closing bool
		want    bool
	}{
		{name: "held reply within the frame timeout", now: since + ft, want: false},
		{name: "held reply past the frame timeout", now: since + ft + 1, want: true},
		{name: "deadline later, past the frame timeout", until: since + 3*ft, now: since + 2*ft, want: false},
		{name: "deadline later, past it", until: since + 3*ft, now: since + 3*ft + 1, want: true},
		{name: "deadline later, closing", until: since + 3*ft, now: since + ft + 1, closing: true, want: true},
		{name: "deadline later, closing, within the frame timeout", until: since + 3*ft, now: since + ft, closing: true, want: false},
		{name: "deadline earlier, within the frame timeout", until: since + ft/2, now: since + ft, want: false},
		{name: "deadline earlier, past the frame timeout", until: since + ft/2, now: since + ft + 1, want: true},
	} {
		g := &holdGroup{since: since, until: tc.until}
		if got := g.expired(tc.now, ft, tc.closing); got != tc.want {
			t.Errorf("%s: expired = %v, want %v", tc.name, got, tc.want)
		}
	}
}
