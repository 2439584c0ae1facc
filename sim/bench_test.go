package sim

import (
	"syscall"
	"testing"
	"time"

	"github.com/dialkv/dialkv/sim/simrun"
)

// BenchmarkPrimaryBackup5 simulates a 5-node primary-backup cluster with
// the default faults and reports simulated operations per CPU-second of the
// simulation alone (ops/cpu-s: process CPU time, garbage collection
// included; checkers excluded) and the virtual/real time ratio. Run: go test -run '^$' -bench PrimaryBackup5 -benchtime=20x ./sim
func BenchmarkPrimaryBackup5(b *testing.B) {
	benchRun(b, simrun.Options{Strategy: "primary-backup", Nodes: 5, Clients: 10, Ops: 5000, LiveOps: 500})
}

func benchRun(b *testing.B, o simrun.Options) { benchRunChecked(b, o, false) }

// BenchmarkPrimaryBackup5Keys50 is BenchmarkPrimaryBackup5 over 50 keys
// per data type instead of 5: the same operation mix, with sets a tenth
// the size (about 16 members at the end of a run instead of 165), so that
// side by side with BenchmarkPrimaryBackup5 it shows how much of the
// mixed workload's cost is the size of its sets (docs/performance.md,
// issue 4, session 8).
func BenchmarkPrimaryBackup5Keys50(b *testing.B) {
	benchRun(b, simrun.Options{Strategy: "primary-backup", Nodes: 5, Clients: 10, Ops: 5000, LiveOps: 500, Keys: 50})
}

// BenchmarkPrimaryBackup5Defaults is `dialkv sim --nodes 5` as it runs:
// the default workload (mixed), clients (5), think time (2 ms), faults and
// latencies, 2000 safety-phase operations, the checkers included (the
// virtual/CPU ratio of the 1000x goal at the defaults).
func BenchmarkPrimaryBackup5Defaults(b *testing.B) {
	benchRunChecked(b, simrun.Options{Strategy: "primary-backup", Nodes: 5, Ops: 2000}, true)
}

// benchRunChecked runs o b.N times (seeds 1..b.N), with the checkers when
// check is set, and reports ops/cpu-s, virtual/cpu and virtual/real.
func benchRunChecked(b *testing.B, o simrun.Options, check bool) {
	s, ok := lookup(o.Strategy)
	if !ok {
		b.Fatalf("no strategy %s", o.Strategy)
	}
	if o.Workload == "" && s.Workload != "" {
		o.Workload = s.Workload
	}
	var ops int
	var virt, simReal time.Duration
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o.Seed = uint64(i + 1)
		out, err := runSansIOWith(o, s, false, !check)
		if err != nil {
			b.Fatal(err)
		}
		ops += out.res.Ops
		virt += out.res.Virtual
		simReal += out.res.Real
	}
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(ops)/cpu.Seconds(), "ops/cpu-s")
	b.ReportMetric(float64(virt)/float64(cpu), "virtual/cpu")
	b.ReportMetric(float64(virt)/float64(simReal), "virtual/real")
}

// cpuTime is the process's user+system CPU time (every thread, the
// garbage collector's included).
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPrimaryBackup5Register is the same over the register workload
// only (small values: the store's cost per operation stays flat).
func BenchmarkPrimaryBackup5Register(b *testing.B) {
	benchRun(b, simrun.Options{Strategy: "primary-backup", Nodes: 5, Clients: 10, Ops: 5000, LiveOps: 500, Workload: "register"})
}

// BenchmarkPrimaryBackup5Slow has clients that think 100 ms between
// operations (100 operations per virtual second): the virtual/real ratio a
// lightly loaded cluster gets.
func BenchmarkPrimaryBackup5Slow(b *testing.B) {
	benchRun(b, simrun.Options{Strategy: "primary-backup", Nodes: 5, Clients: 10, Ops: 5000, LiveOps: 500, Workload: "register", Think: 100 * time.Millisecond})
}

// BenchmarkQuorum5 and BenchmarkCausal5: the other sans-IO strategies, same
// cluster size and workload as BenchmarkPrimaryBackup5Register.
func BenchmarkQuorum5(b *testing.B) {
	benchRun(b, simrun.Options{Strategy: "quorum", Nodes: 5, Clients: 10, Ops: 5000, LiveOps: 500, Workload: "register"})
}

func BenchmarkCausal5(b *testing.B) {
	benchRun(b, simrun.Options{Strategy: "causal", Nodes: 5, Clients: 10, Ops: 5000, LiveOps: 500, Workload: "register"})
}
