package sim

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/sim/simrun"
)

func soak() bool { return os.Getenv("DIALKV_SOAK") != "" }

// TestDeterminism runs every strategy twice with the same seed, in one
// process, and compares the history and the trace byte for byte; a
// different seed must give a different history (or the comparison proves
// nothing).
func TestDeterminism(t *testing.T) {
	t.Parallel()
	for _, s := range Strategies() {
		t.Run(s.Name, func(t *testing.T) {
			o := simrun.Options{Strategy: s.Name, Seed: 42, Ops: 400, Faults: []string{"all"}}
			a, err := run(o, true)
			if err != nil {
				t.Fatal(err)
			}
			b, err := run(o, true)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.history, b.history) {
				t.Errorf("same seed, different histories (%s vs %s)\nreproduce: %s", a.res.HistoryHash, b.res.HistoryHash, o.Command())
			}
			if !bytes.Equal(a.trace, b.trace) {
				t.Errorf("same seed, different traces\nreproduce: %s", o.Command())
			}
			if len(a.trace) == 0 || len(a.history) == 0 {
				t.Fatal("empty trace or history")
			}
			o.Seed = 43
			c, err := run(o, true)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(a.history, c.history) {
				t.Error("seeds 42 and 43 gave the same history")
			}
		})
	}
}

// sweepSeeds runs seeds 1..n of o and returns the results.
func sweepSeeds(t *testing.T, o simrun.Options, n int) []simrun.Result {
	t.Helper()
	var out []simrun.Result
	for seed := uint64(1); seed <= uint64(n); seed++ {
		o.Seed = seed
		oc, err := run(o, false)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		out = append(out, oc.res)
	}
	return out
}

// TestCorrectVariantPasses: the correct strategies pass a sweep under
// every fault kind (a modest number of seeds; thousands under DIALKV_SOAK).
//
// Only the reference strategy is swept here; quorum and causal are swept
// in strategies_test.go, raft in sim/raftsim (the checks that must pass are
// in Strategy.Checks).
func TestCorrectVariantPasses(t *testing.T) {
	t.Parallel()
	n := 25
	if soak() {
		n = 2000
	}
	for _, s := range referenceOnly() {
		for _, fl := range [][]string{nil, {"all"}} {
			t.Run(fmt.Sprintf("%s/%v", s.Name, fl), func(t *testing.T) {
				o := simrun.Options{Strategy: s.Name, Ops: 500, Faults: fl}
				for _, res := range sweepSeeds(t, o, n) {
					if res.Verdict != simrun.Pass {
						t.Errorf("seed %d: %s: %v\nreproduce: %s", res.Options.Seed, res.Verdict, res.Problems, res.Options.Command())
					}
				}
			})
		}
	}
}

// TestBugsCaught: every deliberately broken variant is flagged as a safety
// violation within a small sweep, under the faults that expose it.
func TestBugsCaught(t *testing.T) {
	t.Parallel()
	setups := map[string]simrun.Options{
		// Stale reads need a backup that lags while the primary serves
		// newer values: partitions, pauses and slow links.
		"stale-backup-read": {Workload: "register", Clients: 8, Faults: []string{"partition", "delay", "pause"},
			Rates: map[string]float64{"partition/s": 3, "delay": 0.2}},
		// Lost acknowledged writes need primary crashes.
		"ack-before-replicate": {Faults: []string{"crash", "partition", "delay"}, Rates: map[string]float64{"crash/s": 2}},
	}
	for _, s := range referenceOnly() {
		for _, b := range s.Bugs {
			t.Run(b.Name, func(t *testing.T) {
				o, ok := setups[b.Name]
				if !ok {
					t.Fatalf("no fault setup for bug %s", b.Name)
				}
				o.Strategy, o.Bug, o.Ops = s.Name, b.Name, 500
				caught := 0
				for _, res := range sweepSeeds(t, o, 20) {
					if res.Verdict == simrun.Safety {
						caught++
					}
				}
				if caught == 0 {
					t.Errorf("bug %s not caught in 20 seeds of %s --seeds 1..20", b.Name, o.Command())
				}
				t.Logf("bug %s caught in %d of 20 seeds", b.Name, caught)
				// The same setup without the bug passes.
				o.Bug = ""
				for _, res := range sweepSeeds(t, o, 10) {
					if res.Verdict != simrun.Pass {
						t.Errorf("correct variant fails: %s %v\nreproduce: %s", res.Verdict, res.Problems, res.Options.Command())
					}
				}
			})
		}
	}
}

// TestShrink: shrinking a failing run keeps it failing and makes it
// smaller.
func TestShrink(t *testing.T) {
	t.Parallel()
	o := simrun.Options{Strategy: "primary-backup", Bug: "ack-before-replicate", Ops: 500, Faults: []string{"crash", "partition"},
		Rates: map[string]float64{"crash/s": 2}}
	var failing simrun.Result
	for _, res := range sweepSeeds(t, o, 20) {
		if res.Verdict == simrun.Safety {
			failing = res
			break
		}
	}
	if failing.Verdict == "" {
		t.Fatal("no failing seed to shrink")
	}
	so, sres := Shrink(failing.Options, simrun.Safety, 60, func(s string) { t.Log(s) })
	if sres.Verdict != simrun.Safety {
		t.Fatalf("shrunk run does not fail: %+v", sres.Verdict)
	}
	if so.Ops >= failing.Options.Ops && so.Clients >= failing.Options.Normalize().Clients && len(sres.FaultPlan) >= len(failing.FaultPlan) {
		t.Errorf("nothing shrunk: %s", so.Command())
	}
	// The printed reproducer reproduces: parse it back and run it.
	args := strings.Fields(so.Command())[2:]
	po, _, _, err := parseArgs(args, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	again, err := run(po, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.res.HistoryHash != sres.HistoryHash {
		t.Errorf("reproducer %q gave another history", so.Command())
	}
}

// TestArgsRoundTrip: Options.Args, parsed back by the CLI, gives the same
// options.
func TestArgsRoundTrip(t *testing.T) {
	o := simrun.Options{Strategy: "primary-backup", Seed: 9, Ops: 77, LiveOps: 5, Clients: 3, Nodes: 5,
		Faults: []string{"crash", "partition"}, Rates: map[string]float64{"drop": 0.5, "crash/s": 1},
		Bug: "stale-backup-read", Workload: "register", Keys: 2, KeyDist: "zipfian", Latency: "uniform:1ms-2ms",
		Regions: 2, Zones: 2, CrossRegion: "const:30ms", PairLatency: "0>1=const:80ms;1>0=exp:70ms", Think: time.Millisecond, Timeout: time.Second, LivenessBound: 3 * time.Second,
		Horizon: 2 * time.Second, Params: map[string]string{"ack": "majority"}, KeepFaults: []int{1, 4}, RingChange: "add,remove"}
	got, _, _, err := parseArgs(o.Args(), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Normalize(), o.Normalize()) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got.Normalize(), o.Normalize())
	}
}

// TestMainCLI covers the command's exit codes and outputs.
func TestMainCLI(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"help", []string{"--help"}, 0, "Exit codes"},
		{"list-bugs", []string{"--list-bugs"}, 0, "stale-backup-read            primary-backup"},
		{"list-faults", []string{"--list-faults"}, 0, "partition"},
		{"bad flag", []string{"--nope"}, 3, ""},
		{"bad strategy", []string{"--strategy", "nope"}, 3, ""},
		{"bad fault", []string{"--faults", "meteor"}, 3, ""},
		{"bad bug", []string{"--bug", "nope"}, 3, ""},
		{"bad seeds", []string{"--seeds", "5..1"}, 3, ""},
		{"pass", []string{"--seed", "3", "--ops", "200", "--out", filepath.Join(dir, "pass")}, 0, "PASS"},
		{"safety", []string{"--seed", "1", "--ops", "500", "--bug", "ack-before-replicate", "--faults", "crash", "--rates", "crash/s=3", "--out", filepath.Join(dir, "fail")}, 1, "reproduce: dialkv sim --strategy primary-backup --seed 1"},
		{"sweep", []string{"--seeds", "1..3", "--ops", "100", "--quiet"}, 0, "seeds run     3"},
		{"liveness", []string{"--seed", "1", "--ops", "100", "--liveness-bound", "5ms", "--out", filepath.Join(dir, "live")}, 2, "LIVENESS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(tc.args, &out, &errb)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Errorf("stdout lacks %q:\n%s", tc.out, out.String())
			}
		})
	}
	for _, f := range []string{"history.jsonl", "trace.log", "summary.json", "summary.md", "report.html", "replicas.jsonl"} {
		for _, d := range []string{"pass", "fail"} {
			if st, err := os.Stat(filepath.Join(dir, d, f)); err != nil || st.Size() == 0 {
				t.Errorf("%s/%s missing or empty: %v", d, f, err)
			}
		}
	}
}

// TestDiskFaults: injected I/O errors and corrupted reads fire, and the
// correct strategy still passes (the store's checksums turn corruption into
// errors, never into wrong data).
func TestDiskFaults(t *testing.T) {
	t.Parallel()
	o := simrun.Options{Strategy: "primary-backup", Ops: 500, Faults: []string{"ioerr", "corrupt"},
		Rates: map[string]float64{"ioerr/s": 4, "corrupt/s": 8}}
	ioerrs, corrupt, caught := 0, 0, 0
	for _, res := range sweepSeeds(t, o, 10) {
		if res.Verdict != simrun.Pass {
			t.Errorf("seed %d: %s %v\nreproduce: %s", res.Options.Seed, res.Verdict, res.Problems, res.Options.Command())
		}
		ioerrs += res.IOErrors
		corrupt += res.Corruptions
		caught += res.CorruptReplies
	}
	if ioerrs == 0 || corrupt == 0 {
		t.Errorf("disk faults did not fire: %d I/O errors, %d corruptions", ioerrs, corrupt)
	}
	t.Logf("%d I/O errors, %d corrupted reads, %d CORRUPTION replies", ioerrs, corrupt, caught)
}

func referenceOnly() []Strategy {
	s, _ := lookup("primary-backup")
	return []Strategy{s}
}
