package admin

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
)

// gapWriter is one closed-loop writer: SET after SET (each retried by the
// client on UNAVAILABLE), recording when each was acknowledged.
type gapWriter struct {
	mu    sync.Mutex
	acked []time.Time
}

// maxGap is the longest time in [from, to] without an acknowledgement
// (from the last one before from to the first one after to).
func (g *gapWriter) maxGap(from, to time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := max(0, sortSearch(g.acked, from)-1)
	var gap time.Duration
	for ; i+1 < len(g.acked); i++ {
		if g.acked[i].After(to) {
			break
		}
		gap = max(gap, g.acked[i+1].Sub(g.acked[i]))
	}
	return gap
}

func sortSearch(ts []time.Time, at time.Time) int {
	i, _ := slices.BinarySearchFunc(ts, at, func(a, b time.Time) int { return a.Compare(b) })
	return i
}

// BenchmarkBackupFence measures the write unavailability of a fenced
// cluster backup: three in-process members with a raft (two shards), a
// quorum and a causal namespace, 12 closed-loop writers (4 per namespace,
// through clients that know every node) running throughout, and one
// `backup --cluster` per iteration. Per backup it reports the fence's
// window (first raise sent to last lowering answered, fence-ms), the
// longest time any writer went without an acknowledgement while the
// backup ran (gap-ms), and the same for the equally long stretch just
// before it, with no backup (base-gap-ms): gap-ms minus base-gap-ms is
// what the fence cost the writers. Run it (docs/operations.md):
//
//	go test -run '^$' -bench BackupFence -benchtime 10x ./nodes/admin
func BenchmarkBackupFence(b *testing.B) {
	root := b.TempDir()
	a := startBackupCluster(b, []string{filepath.Join(root, "a1"), filepath.Join(root, "a2"), filepath.Join(root, "a3")}, nil)
	a.create("r", "raft", a.raftParams())
	a.create("q", "quorum", nil)
	a.create("c", "causal", nil)
	var addrs []string
	for i := range a.peers {
		addrs = append(addrs, a.addr(i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ws []*gapWriter
	for _, ns := range []string{"r", "q", "c"} {
		c, err := client.New(addrs, client.WithNamespace(ns), client.WithTimeout(5*time.Second), client.WithRetries(50, 5*time.Millisecond, 50*time.Millisecond))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for w := range 4 {
			g := &gapWriter{}
			ws = append(ws, g)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					if _, err := c.Set(ctx, fmt.Sprintf("g%d-%d", w, i), []byte("x")); err == nil {
						g.mu.Lock()
						g.acked = append(g.acked, time.Now())
						g.mu.Unlock()
					}
				}
			}()
		}
	}
	defer func() { cancel(); wg.Wait() }()
	time.Sleep(2 * time.Second) // writers warm up
	adm := map[string]string{"n1": a.admins["n1"], "n2": a.admins["n2"], "n3": a.admins["n3"]}
	var fence, gap, base []float64
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		m, err := BackupWith(adm, filepath.Join(root, fmt.Sprintf("bk%d", i)), BackupOptions{})
		end := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		if err := checkCluster(m); err != nil {
			b.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // the writers' acknowledgements after the backup
		var g, bg time.Duration
		for _, w := range ws {
			g = max(g, w.maxGap(start, end))
			bg = max(bg, w.maxGap(start.Add(-end.Sub(start)), start))
		}
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		fence, gap, base = append(fence, ms(m.Cut.Window)), append(gap, ms(g)), append(base, ms(bg))
		b.Logf("backup %d: took %v, fence window %v (checkpoints %v), longest writer gap %v, before it %v; %+v",
			i, end.Sub(start).Round(time.Millisecond), m.Cut.Window.Round(time.Microsecond), m.Cut.Checkpoints.Round(time.Microsecond),
			g.Round(time.Microsecond), bg.Round(time.Microsecond), m.Cut.Nodes)
		time.Sleep(time.Second) // the next baseline stretch is free of this backup
	}
	b.StopTimer()
	b.ReportMetric(median(fence), "fence-ms")
	b.ReportMetric(median(gap), "gap-ms")
	b.ReportMetric(median(base), "base-gap-ms")
	b.ReportMetric(slices.Max(gap), "max-gap-ms")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
