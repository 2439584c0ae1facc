package transport

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// crashHandler panics on the command PANIC the way the quorum request path
// did (indexing an empty slice) and answers everything else like stubHandler.
type crashHandler struct{ stubHandler }

var _ gen.DialKV = crashHandler{}

func (h crashHandler) Call(ctx context.Context, o *gen.RequestOptions, c *gen.Command) (*gen.ExecuteResponse, error) {
	if c.GetName() == "PANIC" {
		var rs []core.Reply
		_ = rs[len(c.GetArgv())] // index out of range [0] with length 0
	}
	return h.stubHandler.Call(ctx, o, c)
}

// closeCounter is an Observer counting closes by reason.
type closeCounter struct {
	mu      sync.Mutex
	opened  int
	reasons map[string]int
}

var _ Observer = (*closeCounter)(nil)

func (c *closeCounter) ConnOpened() { c.mu.Lock(); c.opened++; c.mu.Unlock() }
func (c *closeCounter) ConnClosed(r string) {
	c.mu.Lock()
	c.reasons[r]++
	c.mu.Unlock()
}
func (c *closeCounter) ConnRejected() {}
func (c *closeCounter) BytesIn(int)   {}
func (c *closeCounter) BytesOut(int)  {}

func (c *closeCounter) closed(r string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reasons[r]
}

// TestHandlerPanicClosesOnlyItsConnection checks, in both connection modes,
// that a request whose handler panics gets an INTERNAL_ERROR exception, that
// its connection is then closed and released (NumConns drops, the observer
// sees one bad_frame close per panic, the log has the stack), and that
// other connections, open before and during the panics, and new ones keep
// being served.
func TestHandlerPanicClosesOnlyItsConnection(t *testing.T) {
	for _, mode := range []ConnMode{ModeEpoll, ModeGoroutine} {
		t.Run(string(mode), func(t *testing.T) {
			logs := &lockedBuffer{}
			obs := &closeCounter{reasons: map[string]int{}}
			srv := NewServer(gen.NewDialKVProcessor(crashHandler{}), ServerConfig{
				Mode:     mode,
				Logger:   slog.New(slog.NewTextHandler(logs, nil)),
				Observer: obs,
			})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := srv.Shutdown(ctx); err != nil {
					t.Errorf("shutdown: %v", err)
				}
				if err := <-served; err != nil {
					t.Errorf("serve: %v", err)
				}
			}()
			ctx := context.Background()
			dial := func() *Conn {
				t.Helper()
				c, err := Dial(ctx, ln.Addr().String(), DialOptions{})
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				return c
			}
			get := func(c *Conn, who string) {
				t.Helper()
				resp, err := c.Call(ctx, nil, CommandFromCore(core.Cmd("GET", "k")))
				if err != nil || len(resp.GetReplies()) != 1 {
					t.Fatalf("%s: GET: %v %v", who, resp, err)
				}
			}
			keep := []*Conn{dial(), dial()}
			for i, c := range keep {
				get(c, "kept connection "+string(rune('a'+i)))
			}
			// Panics on several connections at once, while the kept ones
			// keep sending.
			const panics = 20
			var wg sync.WaitGroup
			var internal atomic.Int32
			for range panics {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := Dial(ctx, ln.Addr().String(), DialOptions{})
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					_, err = c.Call(ctx, nil, &gen.Command{Name: "PANIC"})
					var ae thrift.TApplicationException
					if errors.As(err, &ae) && ae.TypeId() == thrift.INTERNAL_ERROR {
						internal.Add(1)
					} else {
						t.Errorf("PANIC: err %v, want an INTERNAL_ERROR exception", err)
					}
					// The server closed this connection: the next call fails
					// (with EOF or a reset), it does not hang.
					if _, err := c.Call(ctx, nil, CommandFromCore(core.Cmd("GET", "k"))); err == nil {
						t.Error("a call on the connection whose handler panicked succeeded")
					}
				}()
			}
			for i := range 50 {
				get(keep[i%2], "kept connection during the panics")
			}
			wg.Wait()
			if got := internal.Load(); got != panics {
				t.Fatalf("%d of %d panicking calls got INTERNAL_ERROR", got, panics)
			}
			// Released: only the two kept connections remain.
			deadline := time.Now().Add(5 * time.Second)
			for srv.NumConns() != len(keep) && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if n := srv.NumConns(); n != len(keep) {
				t.Fatalf("NumConns %d after the panicking connections closed, want %d", n, len(keep))
			}
			if n := obs.closed("bad_frame"); n != panics {
				t.Fatalf("%d bad_frame closes, want %d (one per panic)", n, panics)
			}
			for i, c := range keep {
				get(c, "kept connection "+string(rune('a'+i))+" after the panics")
			}
			fresh := dial()
			defer fresh.Close()
			get(fresh, "new connection after the panics")
			l := logs.String()
			if c := strings.Count(l, "request handler panicked"); c != panics {
				t.Fatalf("%d panic log lines, want %d", c, panics)
			}
			if !strings.Contains(l, "crashHandler.Call") {
				t.Fatalf("the panic log has no stack naming the handler: %.500s", l)
			}
			for _, c := range keep {
				c.Close()
			}
		})
	}
}
