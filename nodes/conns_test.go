package nodes

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// connectChild, run by the test binary with DIALKV_TEST_CONNECT=addr,n,
// opens n idle connections to addr, prints "connected n" and holds them
// until its stdin closes. Connections live in a separate process so that
// the node's process holds only its own side (and its own file
// descriptors) and the memory measured is the node's.
func connectChild(spec string) int {
	addr, nstr, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(nstr)
	raiseNoFile()
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			fmt.Printf("error after %d connections: %v\n", i, err)
			return 1
		}
		conns = append(conns, c)
	}
	fmt.Printf("connected %d\n", len(conns))
	io.Copy(io.Discard, os.Stdin)
	return 0
}

func raiseNoFile() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil && r.Cur < r.Max {
		r.Cur = r.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}

// memInUse is the heap in use plus goroutine stacks, after a GC.
func memInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

func waitConns(t *testing.T, n *Node, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for n.NumConns() != want {
		if time.Now().After(deadline) {
			t.Fatalf("node has %d connections, want %d", n.NumConns(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTenThousandConns opens 10,000 idle connections to one node (from a
// child process), measures the node's memory per idle connection, and
// shows the node still serves a fresh client meanwhile — in both
// connection modes.
func TestTenThousandConns(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 10,000 connections")
	}
	for _, mode := range []transport.ConnMode{transport.ModeEpoll, transport.ModeGoroutine} {
		t.Run(string(mode), func(t *testing.T) { tenThousandConns(t, mode) })
	}
}

// rssBytes is the process's resident set size.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

func tenThousandConns(t *testing.T, mode transport.ConnMode) {
	const conns = 10000
	raiseNoFile()
	var r syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
	if r.Cur < conns+1000 {
		t.Skipf("RLIMIT_NOFILE is %d; need %d", r.Cur, conns+1000)
	}
	n := startNode(t, Config{Engine: "memory", MaxConns: 2 * conns, ConnMode: mode})
	before, rssBefore := memInUse(), rssBytes()

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), "DIALKV_TEST_CONNECT="+n.Addr()+","+strconv.Itoa(conns))
	stdin, _ := child.StdinPipe()
	out, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); child.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "connected") {
		t.Fatalf("connecting child: %q %v", line, err)
	}
	waitConns(t, n, conns, 30*time.Second)
	after, rssAfter := memInUse(), rssBytes()
	per := float64(int64(after)-int64(before)) / conns
	t.Logf("%s mode: node memory per idle connection: %.0f bytes of Go heap+stacks (%d -> %d over %d connections); process RSS grew %.0f bytes per connection (not counting kernel socket buffers)",
		mode, per, before, after, conns, float64(rssAfter-rssBefore)/conns)

	// A fresh client is served while 10,000 connections are open.
	c := dial(t, n.Addr())
	start := time.Now()
	if _, err := c.Call(context.Background(), noOpts(), cmd("SET", "k", "v")); err != nil {
		t.Fatalf("SET with %d idle connections open: %v", conns, err)
	}
	r2, err := c.Call(context.Background(), noOpts(), cmd("GET", "k"))
	if err != nil || string(r2.Replies[0].Str) != "v" {
		t.Fatalf("GET with %d idle connections open: %v, %v", conns, r2, err)
	}
	t.Logf("SET+GET on a fresh connection with %d idle ones open: %v", conns, time.Since(start))
	stdin.Close()
	child.Wait()
	waitConns(t, n, 1, 30*time.Second)
}

func TestIdleTimeout(t *testing.T) {
	for _, mode := range []transport.ConnMode{transport.ModeEpoll, transport.ModeGoroutine} {
		t.Run(string(mode), func(t *testing.T) { idleTimeout(t, mode) })
	}
}

func idleTimeout(t *testing.T, mode transport.ConnMode) {
	const idle = time.Second
	n := startNode(t, Config{Engine: "memory", IdleTimeout: idle, ConnMode: mode})
	c := rawConn(t, n.Addr())
	busy := dial(t, n.Addr())
	waitConns(t, n, 2, 5*time.Second)
	// The busy connection keeps talking (every 100 ms, a tenth of the idle
	// timeout); the silent one is closed. On a loaded machine a sleep can
	// overrun by the whole timeout: a busy connection closed after such a
	// gap is logged and replaced; closed after a gap under half the
	// timeout, it is a failure.
	last := time.Now()
	for range 15 { // 1.5 s: past the silent connection's idle timeout
		time.Sleep(100 * time.Millisecond)
		gap := time.Since(last)
		last = time.Now()
		if _, err := busy.Ping(context.Background()); err != nil {
			if gap < idle/2 {
				t.Fatalf("active connection closed %v after its last request (idle timeout %v): %v", gap, idle, err)
			}
			t.Logf("busy connection closed after a %v gap (machine overloaded): dialling again", gap)
			busy.Close()
			busy = dial(t, n.Addr())
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read %v, want EOF (closed by the node)", err)
	}
	waitConns(t, n, 1, 5*time.Second)
}

func TestMaxConns(t *testing.T) {
	for _, mode := range []transport.ConnMode{transport.ModeEpoll, transport.ModeGoroutine} {
		t.Run(string(mode), func(t *testing.T) { maxConns(t, mode) })
	}
}

func maxConns(t *testing.T, mode transport.ConnMode) {
	n := startNode(t, Config{Engine: "memory", MaxConns: 3, ConnMode: mode})
	for range 3 {
		rawConn(t, n.Addr())
	}
	waitConns(t, n, 3, 5*time.Second)
	over, err := transport.Dial(context.Background(), n.Addr(), transport.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = over.Call(context.Background(), noOpts(), cmd("GET", "k"))
	if err == nil || !strings.Contains(err.Error(), "connection limit reached (max-conns 3)") {
		t.Fatalf("connection over the limit: %v, want a clear connection-limit error", err)
	}
	if n.NumConns() != 3 {
		t.Fatalf("node has %d connections, want 3", n.NumConns())
	}
	_ = gen.ReplyKind_NIL
}
