package nodes

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// BenchmarkCall measures single-command round trips (70% GET, 30% SET of
// 100-byte values) over real loopback connections, one per goroutine, for
// each fsync policy:
//
//	go test -run '^$' -bench Call -benchtime=2s -cpu 50 ./nodes
//
// (-cpu 50 makes RunParallel use 50 goroutines, hence 50 connections.)
func BenchmarkCall(b *testing.B) {
	for _, bc := range []struct {
		policy core.SyncPolicy
		mode   transport.ConnMode
	}{{core.SyncNever, transport.ModeEpoll}, {core.SyncNever, transport.ModeGoroutine}, {core.SyncAlways, transport.ModeEpoll}} {
		b.Run("fsync="+bc.policy.String()+"/"+string(bc.mode), func(b *testing.B) {
			n := startNode(b, Config{Fsync: bc.policy, ConnMode: bc.mode})
			val := string(make([]byte, 100))
			var next atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c := dial(b, n.Addr())
				ctx := context.Background()
				for pb.Next() {
					i := next.Add(1)
					k := fmt.Sprintf("k%d", i%10000)
					var err error
					if i%10 < 3 {
						_, err = c.Call(ctx, noOpts(), cmd("SET", k, val))
					} else {
						_, err = c.Call(ctx, noOpts(), cmd("GET", k))
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkBatch100 measures batches of 100 SETs (ops are commands).
func BenchmarkBatch100(b *testing.B) {
	n := startNode(b, Config{Fsync: core.SyncNever})
	val := string(make([]byte, 100))
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := dial(b, n.Addr())
		ctx := context.Background()
		cmds := make([]*gen.Command, 0, 100)
		for pb.Next() {
			cmds = cmds[:0]
			for range 100 {
				cmds = append(cmds, cmd("SET", fmt.Sprintf("k%d", next.Add(1)%10000), val))
			}
			if _, err := c.Execute(ctx, noOpts(), cmds); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "cmds/s")
}

// BenchmarkProcessBatch measures the node's side of `execute` batches of
// 100 commands as `dialkv bench --batch 100` sends them — 100,000 keys,
// 100-byte values, 70 % of the batches 100 GETs and 30 % 100 SETs (uniform
// keys, fixed seed) — from the request frame to the encoded reply frame,
// in one goroutine and without the network: Thrift decoding, the handler,
// the local strategy and store (Pebble, fsync never) and reply encoding.
// ns/cmd is wall time per command; cpu-ns/cmd the process's CPU time per
// command (Pebble's background flushes and compactions included); allocs/cmd
// the heap allocations per command:
//
//	go test -run '^$' -bench ProcessBatch -benchtime=2000x ./nodes
func BenchmarkProcessBatch(b *testing.B) {
	const keys, batch, frames = 100000, 100, 256
	n := startNode(b, Config{Fsync: core.SyncNever})
	key := func(i int) []byte { return fmt.Appendf(nil, "key:%012d", i) }
	rng := rand.New(rand.NewPCG(1, 2))
	val := func() []byte {
		v := make([]byte, 100)
		for i := range v {
			v[i] = byte('a' + rng.IntN(26))
		}
		return v
	}
	execFrame := func(cmds []*gen.Command) []byte {
		buf := thrift.NewTMemoryBuffer()
		p := thrift.NewTBinaryProtocolConf(buf, &thrift.TConfiguration{})
		ctx := context.Background()
		_ = p.WriteMessageBegin(ctx, "execute", thrift.CALL, 1)
		_ = (&gen.DialKVExecuteArgs{Opts: &gen.RequestOptions{}, Cmds: cmds}).Write(ctx, p)
		_ = p.WriteMessageEnd(ctx)
		_ = p.Flush(ctx)
		return buf.Bytes()
	}
	process := func(frame []byte) {
		resp, keep := n.server.Process(frame)
		// A reply to 100 commands is larger than 100 bytes, an exception
		// is not.
		if !keep || len(resp) < 100*batch/10 {
			b.Fatalf("execute: keep=%v, %d reply bytes: %q", keep, len(resp), resp)
		}
	}
	for i := 0; i < keys; i += batch {
		cmds := make([]*gen.Command, batch)
		for j := range cmds {
			cmds[j] = &gen.Command{Name: "SET", Argv: [][]byte{key(i + j), val()}}
		}
		process(execFrame(cmds))
	}
	fs := make([][]byte, frames)
	for f := range fs {
		read := rng.IntN(100) < 70
		cmds := make([]*gen.Command, batch)
		for j := range cmds {
			if read {
				cmds[j] = &gen.Command{Name: "GET", Argv: [][]byte{key(rng.IntN(keys))}}
			} else {
				cmds[j] = &gen.Command{Name: "SET", Argv: [][]byte{key(rng.IntN(keys)), val()}}
			}
		}
		fs[f] = execFrame(cmds)
	}
	// Every command of the first frames succeeds (each is applied once
	// more; the store's contents do not matter to the benchmark).
	for _, f := range fs[:8] {
		resp, _ := n.server.Process(f)
		p := thrift.NewTBinaryProtocolConf(thrift.NewTMemoryBufferLen(len(resp)), &thrift.TConfiguration{})
		_, _ = p.Transport().Write(resp[4:])
		var res gen.DialKVExecuteResult
		if _, _, _, err := p.ReadMessageBegin(context.Background()); err != nil {
			b.Fatal(err)
		}
		if err := res.Read(context.Background(), p); err != nil || res.Success == nil || len(res.Success.Replies) != batch {
			b.Fatalf("execute reply: %+v, %v", res, err)
		}
		for _, r := range res.Success.Replies {
			if r.Kind == gen.ReplyKind_ERROR {
				b.Fatalf("command failed: %v", r.Error)
			}
		}
	}
	// The measured loop is a sub-benchmark: the parent (and the setup
	// above) runs once, not once per b.N tried.
	b.Run("get70-set30", func(b *testing.B) {
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		cpu0 := cpuTime()
		for i := 0; b.Loop(); i++ {
			process(fs[i%frames])
		}
		cpu := cpuTime() - cpu0
		runtime.ReadMemStats(&ms1)
		cmds := float64(b.N * batch)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/cmds, "ns/cmd")
		b.ReportMetric(float64(cpu.Nanoseconds())/cmds, "cpu-ns/cmd")
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/cmds, "allocs/cmd")
	})
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLocalTrack measures --fsync=always's durability tracking of one
// command under dmu (70 % GETs, 30 % SETs of 10,000 keys, one epoch that
// is not synced): a per-request cost --fsync=never does not have.
//
//	go test -run '^$' -bench LocalTrack -benchmem ./nodes
func BenchmarkLocalTrack(b *testing.B) {
	l, _ := newGatedLocal(b, core.SyncAlways)
	rng := rand.New(rand.NewPCG(1, 2))
	reqs := make([]consistency.Request, 4096)
	reps := make([]core.Reply, len(reqs))
	for i := range reqs {
		k := fmt.Sprintf("key:%012d", rng.IntN(10000))
		c := core.Cmd("GET", k)
		reps[i] = core.Bulk(make([]byte, 100))
		if rng.IntN(100) >= 70 {
			c = core.Cmd("SET", k, string(make([]byte, 100)))
			reps[i] = core.OK()
		}
		reqs[i] = consistency.Request{Cmd: &c}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.dmu.Lock()
		l.track(reqs[i], reps[i])
		l.dmu.Unlock()
		i = (i + 1) % len(reqs)
	}
}
