package nodes

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

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
