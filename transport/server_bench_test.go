package transport

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// benchHandler answers `call` with a fixed 100-byte value (GET) or OK
// (anything else), like a node whose store costs nothing: the benchmarks
// below measure the wire path alone.
type benchHandler struct {
	stubHandler
	value []byte
	name  string
}

func (h *benchHandler) Call(_ context.Context, _ *gen.RequestOptions, c *gen.Command) (*gen.ExecuteResponse, error) {
	r := core.OK()
	if c != nil && c.Name == "GET" {
		r = core.Bulk(h.value)
	}
	return &gen.ExecuteResponse{Replies: []*gen.Reply{ReplyFromCore(r, nil)}, ServedBy: &h.name}, nil
}

// benchRequests are a GET and a SET of a 100-byte value as the load
// generator sends them (a namespace-less RequestOptions).
func benchRequests(p Protocol) (get, set []byte) {
	opts := &gen.RequestOptions{}
	get = encodeCall(p, "call", &gen.DialKVCallArgs{Opts: opts, Cmd: CommandFromCore(core.Cmd("GET", "bench:0000000042"))})
	set = encodeCall(p, "call", &gen.DialKVCallArgs{Opts: opts, Cmd: CommandFromCore(core.Command{Name: "SET",
		Args: [][]byte{[]byte("bench:0000000042"), make([]byte, 100)}})})
	return get, set
}

// BenchmarkProcess measures decoding a request, dispatching it to a handler
// that does nothing and encoding its reply — the server's CPU per request
// apart from system calls and the store (cpu-ns/op is the process's CPU
// time, garbage collection included: on a shared machine it is steadier
// than ns/op):
//
//	go test -run '^$' -bench Process -benchmem ./transport
func BenchmarkProcess(b *testing.B) {
	for _, p := range []Protocol{Binary, Compact} {
		get, set := benchRequests(p)
		srv := NewServer(gen.NewDialKVProcessor(&benchHandler{value: make([]byte, 100), name: "n1"}), ServerConfig{Protocol: p})
		for _, rc := range []struct {
			name  string
			frame []byte
		}{{"get", get}, {"set", set}} {
			b.Run(string(p)+"/"+rc.name, func(b *testing.B) {
				b.ReportAllocs()
				cpu0 := cpuTime()
				var out []byte // reused, as the connection loops do
				for b.Loop() {
					var keep bool
					out, keep = srv.appendProcess(srv.ctx, out[:0], rc.frame)
					if !keep || len(out) < 8 {
						b.Fatalf("keep=%v, %d reply bytes", keep, len(out))
					}
				}
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// benchAnswer is a done Deferred that writes benchHandler's answer to a
// SET itself (DeferredAnswer).
type benchAnswer struct{ name string }

func (*benchAnswer) OnDone(f func())             { f() }
func (*benchAnswer) Deadline() (time.Time, bool) { return time.Time{}, false }

func (a *benchAnswer) WriteAnswer(ctx context.Context, name string, seq int32, oprot thrift.TProtocol) bool {
	r := &gen.DialKVCallResult{Success: &gen.ExecuteResponse{Replies: []*gen.Reply{ReplyFromCore(core.OK(), nil)}, ServedBy: &a.name}}
	oprot.WriteMessageBegin(ctx, name, thrift.REPLY, seq)
	r.Write(ctx, oprot)
	oprot.WriteMessageEnd(ctx)
	oprot.Flush(ctx)
	return true
}

// BenchmarkDeferDone measures the reply of a deferred SET once it is done
// (see ErrDeferred), the transport's part with a handler that does
// nothing: "again" serves the request frame again (decode, processor,
// handler, encode), "answer" has the Deferred write the same reply itself
// (DeferredAnswer):
//
//	go test -run '^$' -bench DeferDone -benchmem ./transport
func BenchmarkDeferDone(b *testing.B) {
	_, set := benchRequests(Binary)
	srv := NewServer(gen.NewDialKVProcessor(&benchHandler{value: make([]byte, 100), name: "n1"}), ServerConfig{})
	d := &benchAnswer{name: "n1"}
	ctx := context.WithValue(srv.ctx, deferredKey{}, Deferred(d))
	for _, rc := range []struct {
		name string
		run  func(out []byte) []byte
	}{
		{"again", func(out []byte) []byte { out, _, _, _, _ = srv.appendProcessMode(ctx, out, set, false); return out }},
		{"answer", func(out []byte) []byte { out, _ = srv.appendAnswer(srv.ctx, out, set, d); return out }},
	} {
		b.Run(rc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := cpuTime()
			var out []byte
			for b.Loop() {
				if out = rc.run(out[:0]); len(out) < 8 {
					b.Fatalf("%d reply bytes", len(out))
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRoundTrip measures 70/30 GET/SET calls over loopback
// connections (one per RunParallel goroutine: -cpu 50 gives 50) to a server
// with benchHandler, in each connection mode. Client and server share the
// process, so cpu-µs/op (the process's CPU time per call) is both sides'
// cost; compare it between builds, not with a node's:
//
//	go test -run '^$' -bench RoundTrip -benchtime=20000x -cpu 1,50 ./transport
func BenchmarkRoundTrip(b *testing.B) {
	for _, mode := range []ConnMode{ModeEpoll, ModeGoroutine} {
		b.Run(string(mode), func(b *testing.B) {
			srv := NewServer(gen.NewDialKVProcessor(&benchHandler{value: make([]byte, 100), name: "n1"}), ServerConfig{Mode: mode})
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(ln)
			defer srv.Shutdown(context.Background())
			val := make([]byte, 100)
			var next atomic.Int64
			cpu0 := cpuTime()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				c, err := Dial(ctx, ln.Addr().String(), DialOptions{})
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				opts := &gen.RequestOptions{}
				get := &gen.Command{Name: "GET", Argv: [][]byte{[]byte("bench:0000000042")}}
				set := &gen.Command{Name: "SET", Argv: [][]byte{[]byte("bench:0000000042"), val}}
				for pb.Next() {
					cmd := get
					if next.Add(1)%10 < 3 {
						cmd = set
					}
					r, err := c.Call(ctx, opts, cmd)
					if err != nil || len(r.Replies) != 1 {
						b.Error(fmt.Errorf("call: %v", err))
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
