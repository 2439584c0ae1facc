//go:build linux

package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	"golang.org/x/sys/unix"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// encodeMessage frames one call of method with args in protocol p.
func encodeMessage(p Protocol, method string, seq int32, args thrift.TStruct) []byte {
	buf := thrift.NewTMemoryBuffer()
	pr := p.newProtocol(buf, &thrift.TConfiguration{})
	ctx := context.Background()
	pr.WriteMessageBegin(ctx, method, thrift.CALL, seq)
	args.Write(ctx, pr)
	pr.WriteMessageEnd(ctx)
	pr.Flush(ctx)
	out := binary.BigEndian.AppendUint32(nil, uint32(buf.Len()))
	return append(out, buf.Bytes()...)
}

func TestFrameMethod(t *testing.T) {
	call := &gen.DialKVCallArgs{Opts: &gen.RequestOptions{}, Cmd: CommandFromCore(core.Cmd("GET", "k"))}
	for _, p := range []Protocol{Binary, Compact} {
		frame := encodeMessage(p, "execute", 300, call)[4:] // seq 300: a two-byte varint in compact
		tests := []struct {
			name  string
			frame []byte
			want  string
			ok    bool
		}{
			{"whole", frame, "execute", true},
			{"header only", frame[:len(frame)-len(frame)+headerLen(p, "execute")], "execute", true},
			{"name cut", frame[:headerLen(p, "execute")-1], "", false},
			{"empty", nil, "", false},
			{"garbage", []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}, "", false},
			{"huge name length", func() []byte {
				b := bytes.Clone(frame)
				if p == Binary {
					binary.BigEndian.PutUint32(b[4:], 1<<31)
				} else {
					b[4] = 0xff // the name length's varint (after 0x82, type, two-byte seq)
				}
				return b
			}(), "", false},
		}
		for _, tc := range tests {
			got, ok := frameMethod(p, tc.frame)
			if ok != tc.ok || string(got) != tc.want {
				t.Errorf("%s/%s: frameMethod = %q, %v; want %q, %v", p, tc.name, got, ok, tc.want, tc.ok)
			}
		}
	}
}

// headerLen is the length of a message header up to the end of the name
// (seq 300).
func headerLen(p Protocol, name string) int {
	if p == Binary {
		return 8 + len(name)
	}
	return 2 + 2 + 1 + len(name)
}

// inlineHandler records how each command was served; "BLOCK" refuses the
// event loop (as a request that needs to wait does).
type inlineHandler struct {
	stubHandler
	mu    sync.Mutex
	log   []string      // "GET a inline" / "GET a worker", in serving order
	moved int           // requests refused on the event loop
	gate  chan struct{} // what HOLD and FAILHOLD hold their replies on
}

func (h *inlineHandler) Call(ctx context.Context, o *gen.RequestOptions, c *gen.Command) (*gen.ExecuteResponse, error) {
	cc, err := CommandToCore(c)
	if err != nil {
		return nil, &gen.InvalidArgument{Message: err.Error()}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	where := "worker"
	if Inline(ctx) {
		if cc.Name == "BLOCK" {
			h.moved++
			return nil, ErrServeOnWorker
		}
		if cc.Name == "REMOTE" {
			h.moved++
			return nil, ErrNotInline
		}
		where = "inline"
	}
	if cc.Name == "HOLD" || cc.Name == "FAILHOLD" {
		w := gateWaiter{gate: h.gate}
		if cc.Name == "FAILHOLD" {
			w.err = errors.New("sync failed")
		}
		if !Hold(ctx, w) {
			where += " unheld"
		}
	}
	h.log = append(h.log, fmt.Sprintf("%s %.10s %s", cc.Name, cc.Args[0], where))
	return &gen.ExecuteResponse{Replies: []*gen.Reply{ReplyFromCore(core.Bulk(cc.Args[0]), nil)}}, nil
}

// gateWaiter is a Waiter whose wait is over when gate closes; its
// callbacks run on a goroutine of their own.
type gateWaiter struct {
	gate chan struct{}
	err  error
}

func (w gateWaiter) OnDone(f func()) { go func() { <-w.gate; f() }() }
func (w gateWaiter) Err() error      { return w.err }

// serveEpoll serves srv on a loopback listener until the test ends and
// returns its address.
func serveEpoll(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// callFrame is a `call` request of the command name arg, sequence number
// seq, in protocol p.
func callFrame(p Protocol, seq int32, name, arg string) []byte {
	return encodeMessage(p, "call", seq, &gen.DialKVCallArgs{Opts: &gen.RequestOptions{}, Cmd: CommandFromCore(core.Cmd(name, arg))})
}

// waitIdle waits until srv's event loop runs (Serve, started on a
// goroutine of its own, sets it up) and no worker owns a connection of it
// (the event loop serves a connection only if it finds it idle).
func waitIdle(t *testing.T, srv *Server) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(time.Millisecond) {
		srv.mu.Lock()
		st := srv.ep
		srv.mu.Unlock()
		if st == nil {
			continue
		}
		busy := false
		st.mu.RLock()
		for _, c := range st.conns {
			busy = busy || (c != nil && c.state.Load() != connIdle)
		}
		st.mu.RUnlock()
		if !busy {
			return
		}
	}
	t.Fatal("a connection stayed owned for 10 s")
}

// TestInlineServing: with InlineMethods, small requests are served on the
// event loop; a request its handler refuses there (ErrServeOnWorker), a
// request too large, a method not listed, and every request after them in
// the same read go to a worker, each served exactly once, and the replies
// come back in order. The next read starts on the event loop again.
func TestInlineServing(t *testing.T) {
	for _, p := range []Protocol{Binary, Compact} {
		t.Run(string(p), func(t *testing.T) {
			h := &inlineHandler{}
			srv := NewServer(gen.NewDialKVProcessor(h), ServerConfig{Mode: ModeEpoll, Protocol: p, InlineMethods: []string{"call"}})
			addr := serveEpoll(t, srv)
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(20 * time.Second))

			big := strings.Repeat("x", inlineMaxFrame)
			call := func(seq int32, name, arg string) []byte {
				return callFrame(p, seq, name, arg)
			}
			// exchange writes reqs in one write and checks the replies:
			// seq 1.., each echoing its argument (ping: the node id).
			exchange := func(args []string, reqs ...[]byte) {
				t.Helper()
				if _, err := nc.Write(bytes.Join(reqs, nil)); err != nil {
					t.Fatal(err)
				}
				for i, want := range args {
					frame, err := readFrame(nc, nil, 1<<20)
					if err != nil {
						t.Fatalf("reply %d: %v (reproduce: go test -run TestInlineServing ./transport)", i+1, err)
					}
					pr := p.newProtocol(&thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(frame)}, &thrift.TConfiguration{})
					name, typ, seq, err := pr.ReadMessageBegin(context.Background())
					if err != nil || typ != thrift.REPLY || seq != int32(i+1) {
						t.Fatalf("reply %d: %q type %v seq %d, %v; want REPLY seq %d", i+1, name, typ, seq, err, i+1)
					}
					got := ""
					switch name {
					case "call":
						var res gen.DialKVCallResult
						if err := res.Read(context.Background(), pr); err != nil || res.Success == nil {
							t.Fatalf("reply %d: %+v, %v", i+1, res, err)
						}
						got = string(res.Success.Replies[0].Str)
					case "ping":
						var res gen.DialKVPingResult
						if err := res.Read(context.Background(), pr); err != nil || res.Success == nil {
							t.Fatalf("reply %d: %+v, %v", i+1, res, err)
						}
						got = res.Success.ID
					}
					if got != want {
						t.Fatalf("reply %d: %.12q, want %.12q", i+1, got, want)
					}
				}
			}
			exchange([]string{"a", "b", "c", "n", "d"},
				call(1, "GET", "a"), call(2, "BLOCK", "b"), call(3, "GET", "c"),
				encodeMessage(p, "ping", 4, &gen.DialKVPingArgs{}), call(5, "GET", "d"))
			waitIdle(t, srv)
			exchange([]string{"e", big, "f"}, call(1, "GET", "e"), call(2, "GET", big), call(3, "GET", "f"))
			waitIdle(t, srv)
			exchange([]string{"g"}, call(1, "GET", "g"))

			h.mu.Lock()
			defer h.mu.Unlock()
			want := []string{
				"GET a inline", "BLOCK b worker", "GET c worker", "GET d worker",
				"GET e inline", "GET xxxxxxxxxx worker", "GET f worker",
				"GET g inline",
			}
			if strings.Join(h.log, "; ") != strings.Join(want, "; ") || h.moved != 1 {
				t.Fatalf("served:\n  %s\nmoved %d; want\n  %s\nmoved 1", strings.Join(h.log, "; "), h.moved, strings.Join(want, "; "))
			}
		})
	}
}

// TestNotInlineSkips: after a request its handler refuses on the event
// loop with ErrNotInline (a replicated namespace's write), the loop hands
// the connection's next notInlineSkip readable events straight to a worker
// without decoding them; the request after those is tried on the loop
// again, and a request that can be served there is. Each request is served
// exactly once, in order.
func TestNotInlineSkips(t *testing.T) {
	h := &inlineHandler{}
	srv := NewServer(gen.NewDialKVProcessor(h), ServerConfig{Mode: ModeEpoll, InlineMethods: []string{"call"}})
	addr := serveEpoll(t, srv)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	var want []string
	for i := range 2*notInlineSkip + 3 {
		// REMOTE twice as long as the skip, then GETs: one on a worker
		// (still skipped), the next inline again.
		name, where := "REMOTE", "worker"
		if i >= 2*notInlineSkip+1 {
			name = "GET"
		}
		if i == 2*notInlineSkip+2 {
			where = "inline"
		}
		arg := fmt.Sprint(i)
		want = append(want, fmt.Sprintf("%s %s %s", name, arg, where))
		waitIdle(t, srv) // one request per readable event
		if _, err := nc.Write(callFrame(Binary, int32(i+1), name, arg)); err != nil {
			t.Fatal(err)
		}
		frame, err := readFrame(nc, nil, 1<<20)
		if err != nil {
			t.Fatalf("reply %d: %v (reproduce: go test -run TestNotInlineSkips ./transport)", i+1, err)
		}
		pr := Binary.newProtocol(&thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(frame)}, &thrift.TConfiguration{})
		var res gen.DialKVCallResult
		if _, _, seq, err := pr.ReadMessageBegin(context.Background()); err != nil || seq != int32(i+1) {
			t.Fatalf("reply %d: seq %d, %v", i+1, seq, err)
		}
		if err := res.Read(context.Background(), pr); err != nil || res.Success == nil || string(res.Success.Replies[0].Str) != arg {
			t.Fatalf("reply %d: %+v, %v; want %q", i+1, res.Success, err, arg)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	// Tried on the loop: the first REMOTE and the one after the skip.
	if strings.Join(h.log, "; ") != strings.Join(want, "; ") || h.moved != 2 {
		t.Fatalf("served:\n  %s\nrefused on the loop %d times; want\n  %s\nrefused 2 times", strings.Join(h.log, "; "), h.moved, strings.Join(want, "; "))
	}
}

// TestInlineHold: a reply held on the event loop (Hold) is sent only once
// what it waits for is done, with the replies before it, and the requests
// after it in the same read are then served by a worker; several
// connections held on one gate all go on; a held reply whose check fails is
// not sent and its connection alone is closed.
func TestInlineHold(t *testing.T) {
	h := &inlineHandler{gate: make(chan struct{})}
	srv := NewServer(gen.NewDialKVProcessor(h), ServerConfig{Mode: ModeEpoll, InlineMethods: []string{"call"}})
	addr := serveEpoll(t, srv)
	call := func(seq int32, name, arg string) []byte {
		return callFrame(Binary, seq, name, arg)
	}
	a := dialSend(t, addr, call(1, "GET", "a1"), call(2, "HOLD", "a2"), call(3, "GET", "a3"))
	b := dialSend(t, addr, call(1, "HOLD", "b1"))
	f := dialSend(t, addr, call(1, "GET", "f1"), call(2, "FAILHOLD", "f2"), call(3, "GET", "f3"))
	// All three are held once the handler has seen their holds.
	waitLogged(t, &h.mu, &h.log, 5, 20*time.Second)
	for _, nc := range []net.Conn{a, b, f} {
		nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := nc.Read(make([]byte, 1)); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a held connection answered before its gate opened: %d bytes, %v", n, err)
		}
	}
	close(h.gate)
	expectCallReplies(t, a, "a", "a1", "a2", "a3")
	expectCallReplies(t, b, "b", "b1")
	f.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := f.Read(make([]byte, 1)); n > 0 || err != io.EOF {
		t.Fatalf("connection with a failed hold: read %d bytes, %v; want EOF, no reply", n, err)
	}
	expectCallReplies(t, dialSend(t, addr, call(1, "GET", "c1")), "a new connection", "c1")
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range []string{"GET a1 inline", "HOLD a2 inline", "GET a3 worker", "HOLD b1 inline", "GET f1 inline", "FAILHOLD f2 inline", "GET c1 inline"} {
		found := false
		for _, l := range h.log {
			found = found || l == w
		}
		if !found {
			t.Errorf("%q not served; served: %s", w, strings.Join(h.log, "; "))
		}
	}
	for _, l := range h.log {
		if strings.HasPrefix(l, "GET f3") {
			t.Errorf("%q served after its connection's held reply failed", l)
		}
	}
}

// funcWaiter is a Waiter whose wait the test ends by calling the callback
// it kept (nil until a hold registers one).
type funcWaiter struct {
	mu sync.Mutex
	f  func()
}

func (w *funcWaiter) OnDone(f func()) { w.mu.Lock(); w.f = f; w.mu.Unlock() }
func (w *funcWaiter) Err() error      { return nil }

// TestHeldReplyDoesNotBlockItsWaiter: the goroutine that ends a wait (the
// group commit's syncer) writes the held replies without waiting for a
// client: a reply whose socket is full is finished by a goroutine of its
// own, once the client reads, and the connection is then released. (A
// callback that waited for the socket would hold up every later sync.)
func TestHeldReplyDoesNotBlockItsWaiter(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	full := make([]byte, 64<<10)
	sent := 0
	for {
		n, err := unix.Write(fds[0], full)
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sent += n
	}
	srv := NewServer(gen.NewDialKVProcessor(stubHandler{}), ServerConfig{Mode: ModeEpoll})
	srv.frameTimeout.Store(int64(5 * time.Second))
	st := &epollState{epfd: -1, holds: map[Waiter]*holdGroup{}}
	c := &econn{fd: fds[0]}
	c.state.Store(connBusy)
	st.conns = make([]*econn, fds[0]+1)
	st.conns[fds[0]] = c
	w := &funcWaiter{}
	srv.epollHold(st, &heldReply{c: c, out: []byte("the held reply"), w: w})
	w.mu.Lock()
	f := w.f
	w.mu.Unlock()
	if f == nil {
		t.Fatal("epollHold registered no callback on its Waiter")
	}
	start := time.Now()
	f()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the wait's callback took %v with the client's socket full; want no waiting", d)
	}
	// The client reads: everything, the held reply last, arrives.
	var got []byte
	buf := make([]byte, 64<<10)
	for deadline := time.Now().Add(10 * time.Second); len(got) < sent+len("the held reply"); {
		n, err := unix.Read(fds[1], buf)
		switch {
		case err == nil && n > 0:
			got = append(got, buf[:n]...)
		case errors.Is(err, unix.EAGAIN) && time.Now().Before(deadline):
			time.Sleep(time.Millisecond)
		default:
			t.Fatalf("client read after %d of %d bytes: %d, %v", len(got), sent+len("the held reply"), n, err)
		}
	}
	if !bytes.HasSuffix(got, []byte("the held reply")) {
		t.Fatalf("the held reply did not arrive last: ...%q", got[max(0, len(got)-20):])
	}
	for deadline := time.Now().Add(10 * time.Second); c.state.Load() != connIdle; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("connection state %d after its held reply was written; want idle (released)", c.state.Load())
		}
	}
}

// TestHeldReplyExpires: a reply held on a wait that never ends is not
// sent, and its connection is closed, once it has waited longer than the
// frame timeout; other connections are served meanwhile.
func TestHeldReplyExpires(t *testing.T) {
	h := &inlineHandler{gate: make(chan struct{})} // never closed
	srv := NewServer(gen.NewDialKVProcessor(h), ServerConfig{Mode: ModeEpoll, InlineMethods: []string{"call"}})
	srv.frameTimeout.Store(int64(300 * time.Millisecond))
	addr := serveEpoll(t, srv)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	call := callFrame(Binary, 1, "HOLD", "x")
	if _, err := nc.Write(call); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if n, err := nc.Read(make([]byte, 1)); n > 0 || err != io.EOF {
		t.Fatalf("held forever: read %d bytes, %v after %v; want EOF after the 300 ms frame timeout", n, err, time.Since(start))
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("closed after %v, before the frame timeout", d)
	}
}

// dialSend dials addr, writes reqs in one write, and closes the connection
// when the test ends.
func dialSend(t *testing.T, addr string, reqs ...[]byte) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write(bytes.Join(reqs, nil)); err != nil {
		t.Fatal(err)
	}
	return nc
}

// waitLogged waits until a test handler's log (under mu) holds at least
// n entries: the requests it has seen.
func waitLogged(t *testing.T, mu *sync.Mutex, log *[]string, n int, within time.Duration) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		mu.Lock()
		got := len(*log)
		mu.Unlock()
		if got >= n {
			return
		}
		if time.Since(start) > within {
			t.Fatalf("the handler saw %d requests in %v, want %d", got, within, n)
		}
	}
}

// expectCallReplies reads len(want) `call` replies from nc: the i-th must
// have seq id i+1 and first reply string want[i].
func expectCallReplies(t *testing.T, nc net.Conn, what string, want ...string) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i, w := range want {
		frame, err := readFrame(nc, nil, 1<<20)
		if err != nil {
			t.Fatalf("%s: reply %d: %v (reproduce: go test -run '^%s$' ./transport)", what, i+1, err, t.Name())
		}
		pr := Binary.newProtocol(&thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(frame)}, &thrift.TConfiguration{})
		var res gen.DialKVCallResult
		if _, _, seq, err := pr.ReadMessageBegin(context.Background()); err != nil || seq != int32(i+1) {
			t.Fatalf("%s: reply %d: seq %d, %v", what, i+1, seq, err)
		}
		if err := res.Read(context.Background(), pr); err != nil || res.Success == nil || string(res.Success.Replies[0].Str) != w {
			t.Fatalf("%s: reply %d: %+v, %v; want %q", what, i+1, res.Success, err, w)
		}
	}
}
