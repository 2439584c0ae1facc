package bench

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
)

// fakeRedis is a RESP2 server for the tests: SET answers +OK, GET a bulk
// (every nilEvery-th command a nil, every errEvery-th an error reply) and
// anything else :1 (counting each kind).
type fakeRedis struct {
	errEvery, nilEvery int64
	n, gets, sets      atomic.Int64
	errs               atomic.Int64
	sent               chan string // the commands read, if not nil (not blocking)
}

func (f *fakeRedis) start(t *testing.T) string { return listenFake(t, f.serve) }

// listenFake serves every connection to a new loopback listener (closed
// with the test) with serve, on a goroutine each, and returns its address.
func listenFake(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

func (f *fakeRedis) serve(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	for {
		argv, err := readRESPCommand(r)
		if err != nil {
			return
		}
		if f.sent != nil {
			select {
			case f.sent <- strings.Join(argv, " "):
			default:
			}
		}
		n := f.n.Add(1)
		switch {
		case argv[0] == "GET" && f.errEvery > 0 && n%f.errEvery == 0:
			f.errs.Add(1)
			w.WriteString("-ERR refused by the test\r\n")
		case argv[0] == "SET":
			f.sets.Add(1)
			w.WriteString("+OK\r\n")
		case argv[0] == "GET" && f.nilEvery > 0 && n%f.nilEvery == 0:
			f.gets.Add(1)
			w.WriteString("$-1\r\n")
		case argv[0] == "GET":
			f.gets.Add(1)
			w.WriteString("$5\r\nhello\r\n")
		default:
			w.WriteString(":1\r\n")
		}
		// Flush when the pipeline read so far is answered.
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// readRESPCommand reads one array of bulk strings.
func readRESPCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if line[0] != '*' {
		return nil, errors.New("not an array: " + line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil || n < 1 {
		return nil, errors.New("bad array: " + line)
	}
	argv := make([]string, n)
	for i := range argv {
		hdr, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		l, err := strconv.Atoi(strings.TrimSpace(hdr[1:]))
		if err != nil || hdr[0] != '$' {
			return nil, errors.New("bad bulk: " + hdr)
		}
		b := make([]byte, l+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		argv[i] = string(b[:l])
	}
	return argv, nil
}

func TestRESPReplies(t *testing.T) {
	for _, tc := range []struct {
		name       string
		data       string
		n          int
		size, fail int
		err        bool
	}{
		{"ok", "+OK\r\n", 1, 5, 0, false},
		{"bulk", "$5\r\nhello\r\n", 1, 11, 0, false},
		{"nil", "$-1\r\n", 1, 5, 0, false},
		{"int", ":12\r\n", 1, 5, 0, false},
		{"error", "-ERR x\r\n", 1, 8, 1, false},
		{"pipeline", "+OK\r\n-ERR\r\n$1\r\nv\r\n$-1\r\n", 4, 5 + 6 + 7 + 5, 1, false},
		{"pipeline, trailing bytes left", "+OK\r\n+OK\r\n+O", 2, 10, 0, false},
		{"partial line", "+O", 1, 0, 0, false},
		{"partial bulk", "$5\r\nhel", 1, 0, 0, false},
		{"partial pipeline", "+OK\r\n$5\r\nhel", 2, 0, 0, false},
		{"empty", "", 1, 0, 0, false},
		{"bare LF", "+OK\n", 1, 0, 0, true},
		{"unknown kind", "*2\r\n", 1, 0, 0, true},
		{"bad bulk length", "$x\r\n", 1, 0, 0, true},
		{"negative bulk length", "$-2\r\n", 1, 0, 0, true},
		{"huge bulk length", "$999999999999\r\n", 1, 0, 0, true},
		{"bulk not ended by CRLF", "$1\r\nvxx", 1, 0, 0, true},
		{"no end of line", "+" + strings.Repeat("a", 100), 1, 0, 0, true},
	} {
		size, fail, err := respReplies([]byte(tc.data), tc.n)
		if (err != nil) != tc.err || size != tc.size || fail != tc.fail {
			t.Errorf("%s: respReplies(%q, %d) = %d, %d, %v; want %d, %d, error %v", tc.name, tc.data, tc.n, size, fail, err, tc.size, tc.fail, tc.err)
		}
		if err != nil && !errors.Is(err, errRESP) {
			t.Errorf("%s: error %v is not errRESP", tc.name, err)
		}
	}
}

// FuzzRESPReplies: any bytes give a size within them or an error, never a
// panic; a complete parse of n replies is also one of the first n-1 and
// the rest.
func FuzzRESPReplies(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "$5\r\nhello\r\n$-1\r\n", "-ERR\r\n:1\r\n", "$3\r\nab", "$-2\r\n"} {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		k := int(n%8) + 1
		size, failed, err := respReplies(data, k)
		if err != nil {
			return
		}
		if size < 0 || size > len(data) || failed > k || (size == 0 && failed != 0) {
			t.Fatalf("respReplies(%q, %d) = %d, %d", data, k, size, failed)
		}
		if size > 0 && k > 1 {
			first, f1, err1 := respReplies(data, k-1)
			last, f2, err2 := respReplies(data[first:size], 1)
			if err1 != nil || err2 != nil || first+last != size || f1+f2 != failed {
				t.Fatalf("respReplies(%q): %d replies in %d bytes, but %d+%d", data, k, size, first, last)
			}
		}
	})
}

func TestRESPConn(t *testing.T) {
	f := &fakeRedis{errEvery: 5, nilEvery: 3, sent: make(chan string, 16)}
	connect, err := RESPConnector(Config{Addr: f.start(t), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c, err := connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	set := core.Command{Name: "SET", Args: [][]byte{[]byte("k"), []byte("v")}}
	get := core.Command{Name: "GET", Args: [][]byte{[]byte("k")}}
	for i, tc := range []struct {
		cmds       []core.Command
		wantFailed int
		wantSent   []string
	}{
		{[]core.Command{set}, 0, []string{"SET k v"}},
		{[]core.Command{get, get}, 0, []string{"GET k", "GET k"}},   // a value, then nil
		{[]core.Command{set, get}, 1, []string{"SET k v", "GET k"}}, // +OK, then an error reply
	} {
		failed, err := c.Do(context.Background(), tc.cmds)
		if err != nil || failed != tc.wantFailed {
			t.Fatalf("case %d: failed %d, err %v; want %d, nil", i, failed, err, tc.wantFailed)
		}
		for _, w := range tc.wantSent {
			if g := <-f.sent; g != w {
				t.Fatalf("case %d: server read %q, want %q", i, g, w)
			}
		}
	}
	// A value larger than the read buffer is skipped whole, and the
	// connection stays in step.
	big := &fakeBig{size: 40 << 10}
	connect, _ = RESPConnector(Config{Addr: big.start(t), Timeout: 2 * time.Second})
	bc, err := connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	for i := range 3 {
		if failed, err := bc.Do(context.Background(), []core.Command{get, get}); err != nil || failed != 0 {
			t.Fatalf("big value, request %d: failed %d, err %v", i, failed, err)
		}
	}
}

// fakeBig answers every command with a bulk of size bytes.
type fakeBig struct{ size int }

func (f *fakeBig) start(t *testing.T) string {
	return listenFake(t, func(c net.Conn) {
		defer c.Close()
		r := bufio.NewReader(c)
		reply := "$" + strconv.Itoa(f.size) + "\r\n" + strings.Repeat("x", f.size) + "\r\n"
		for {
			if _, err := readRESPCommand(r); err != nil {
				return
			}
			if _, err := c.Write([]byte(reply)); err != nil {
				return
			}
		}
	})
}

// TestRESPRun: the runner over RESP, with either client (--io goroutine and,
// on Linux, loop), counts exactly the commands the server answered, error
// replies as failed, batches as pipelines, and the load writes every key.
func TestRESPRun(t *testing.T) {
	ios := []string{IOGoroutine}
	if loopSupported {
		ios = append(ios, IOLoop)
	}
	for _, io := range ios {
		for _, batch := range []int{1, 10} {
			f := &fakeRedis{errEvery: 13, nilEvery: 5}
			cfg := baseConfig()
			cfg.Addr, cfg.IO, cfg.Protocol, cfg.Batch, cfg.Load = f.start(t), io, ProtocolRESP, batch, true
			connect, err := RESPConnector(cfg)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), cfg, connect, nil)
			if err != nil {
				t.Fatalf("--io %s --batch %d: %v", io, batch, err)
			}
			seen := f.gets.Load() + f.sets.Load() + f.errs.Load()
			if res.Ops == 0 || res.Ops+int64(cfg.Keys) != seen {
				t.Errorf("--io %s --batch %d: %d ops measured + %d keys loaded; the server answered %d commands", io, batch, res.Ops, cfg.Keys, seen)
			}
			// Only GETs get error replies (the load only SETs).
			if res.Errors == 0 || res.Errors != f.errs.Load() {
				t.Errorf("--io %s --batch %d: %d errors counted, the server sent %d error replies", io, batch, res.Errors, f.errs.Load())
			}
			if res.Reads.P50Ms <= 0 || res.Writes.P50Ms <= 0 {
				t.Errorf("--io %s --batch %d: latencies not recorded: %+v %+v", io, batch, res.Reads, res.Writes)
			}
		}
	}
}

func TestRESPRejectsRequestOptions(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Namespace = "ns" },
		func(c *Config) { c.R = 2 },
		func(c *Config) { c.ViaClient = true },
		func(c *Config) { c.ReadMode = "stale" },
	} {
		cfg := baseConfig()
		cfg.Protocol = ProtocolRESP
		mod(&cfg)
		if err := cfg.Validate(); err == nil {
			t.Errorf("--protocol resp with %+v: no error", cfg)
		}
	}
	cfg := baseConfig()
	cfg.Protocol = ProtocolRESP
	if err := cfg.Validate(); err != nil {
		t.Errorf("--protocol resp: %v", err)
	}
}
