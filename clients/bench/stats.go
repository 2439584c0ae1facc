package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 60 s with three
// significant digits.
const (
	histMin    = 1
	histMax    = 60_000_000
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

func micros(d time.Duration) int64 {
	us := d.Microseconds()
	if us < histMin {
		return histMin
	}
	if us > histMax {
		return histMax
	}
	return us
}

// counts are what a worker accumulates between two collections.
type counts struct {
	readOps, writeOps   int64 // operations (commands)
	readReqs, writeReqs int64 // requests (one per batch)
	errors              int64 // failed requests plus failed commands inside batches
}

func (c *counts) add(o counts) {
	c.readOps += o.readOps
	c.writeOps += o.writeOps
	c.readReqs += o.readReqs
	c.writeReqs += o.writeReqs
	c.errors += o.errors
}

// workerStats is one worker's interval statistics. The worker records under
// mu; the collector drains them once per progress interval, so the lock is
// uncontended almost always.
type workerStats struct {
	mu          sync.Mutex
	read, write *hdrhistogram.Histogram
	c           counts
}

func newWorkerStats() *workerStats {
	return &workerStats{read: newHist(), write: newHist()}
}

// record notes one request of n commands, failed of which failed on their
// own; err says the whole request failed (its latency is not recorded).
func (w *workerStats) record(read bool, n, failed int, lat time.Duration, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.c.errors += int64(n)
		return
	}
	w.c.errors += int64(failed)
	if read {
		w.c.readOps += int64(n)
		w.c.readReqs++
		w.read.RecordValue(micros(lat)) //nolint:errcheck // micros clamps to the range
	} else {
		w.c.writeOps += int64(n)
		w.c.writeReqs++
		w.write.RecordValue(micros(lat)) //nolint:errcheck
	}
}

// drainInto adds the worker's interval statistics to the given ones and
// resets them.
func (w *workerStats) drainInto(read, write *hdrhistogram.Histogram, c *counts) {
	w.mu.Lock()
	defer w.mu.Unlock()
	drainHist(read, w.read)
	drainHist(write, w.write)
	c.add(w.c)
	w.c = counts{}
}

// drainHist adds from to into and zeroes it; an empty from (a read-only or
// write-only run's other histogram) costs neither the merge's walk nor the
// reset's clearing of its counts.
func drainHist(into, from *hdrhistogram.Histogram) {
	if from.TotalCount() == 0 {
		return
	}
	into.Merge(from)
	from.Reset()
}

// LatencyStats summarise one kind of operation.
type LatencyStats struct {
	Ops       int64   `json:"ops"`
	Requests  int64   `json:"requests"`
	OpsPerSec float64 `json:"ops_per_sec"`
	MeanMs    float64 `json:"mean_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	MaxMs     float64 `json:"max_ms"`
}

func latencyStats(h *hdrhistogram.Histogram, ops, reqs int64, elapsed time.Duration) LatencyStats {
	s := LatencyStats{Ops: ops, Requests: reqs}
	if elapsed > 0 {
		s.OpsPerSec = float64(ops) / elapsed.Seconds()
	}
	if h.TotalCount() > 0 {
		ms := func(us int64) float64 { return float64(us) / 1000 }
		s.MeanMs = h.Mean() / 1000
		s.P50Ms = ms(h.ValueAtQuantile(50))
		s.P99Ms = ms(h.ValueAtQuantile(99))
		s.P999Ms = ms(h.ValueAtQuantile(99.9))
		s.MaxMs = ms(h.Max())
	}
	return s
}
