package checker

import (
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time: on a shared machine it
// moves less with other load than wall time does.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var (
	benchOnce sync.Once
	benchOps  []Op
)

// benchHistory is a 100,000-operation linearizable history over 1,000 keys
// from 50 clients (genHistory, seed 42).
func benchHistory() []Op {
	benchOnce.Do(func() { benchOps = genHistory(42, 100_000, 1000, 50) })
	return benchOps
}

// BenchmarkCheck measures each checker on the 100k-operation history:
//
//	go test ./checker -run '^$' -bench Check -benchtime 3x
func BenchmarkCheck(b *testing.B) {
	ops := benchHistory()
	reps := []ReplicaState{{Node: "n1", Data: map[string]string{}}, {Node: "n2", Data: map[string]string{}}}
	for i := 0; i < 1000; i++ {
		k := "k" + itoa(uint64(i))
		reps[0].Data[k], reps[1].Data[k] = "v"+k, "v"+k
	}
	for _, name := range []string{CheckLinearizable, CheckSession, CheckCausal, CheckCausalConvergence, CheckConvergence, CheckDurability, CheckStaleness} {
		b.Run(name, func(b *testing.B) {
			opts := DefaultOptions()
			opts.Checks = []string{name}
			opts.Timeout = 10 * time.Minute
			c0 := cpuTime()
			for i := 0; i < b.N; i++ {
				res := Check(ops, reps, opts)
				if res.Verdict != VerdictOK {
					b.Fatalf("%s: %s: %s", name, res.Verdict, res.Checks[0].Summary)
				}
			}
			b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(len(ops)), "ops/history")
		})
	}
	// causal-memory is bounded (CausalMemoryLimit): measured on 5,000 operations.
	b.Run(CheckCausalMemory+"-5k", func(b *testing.B) {
		small := genHistory(42, 5000, 50, 10)
		opts := DefaultOptions()
		opts.Checks = []string{CheckCausalMemory}
		opts.CausalMemoryLimit = 10000
		c0 := cpuTime()
		for i := 0; i < b.N; i++ {
			if res := Check(small, nil, opts); res.Verdict != VerdictOK {
				b.Fatalf("%s: %s", res.Verdict, res.Checks[0].Summary)
			}
		}
		b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(len(small)), "ops/history")
	})
}
