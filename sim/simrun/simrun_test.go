package simrun

import (
	"strings"
	"testing"
	"time"
)

func TestDeriveSeed(t *testing.T) {
	if DeriveSeed(1, "net") == DeriveSeed(1, "plan") || DeriveSeed(1, "net") == DeriveSeed(2, "net") {
		t.Error("derived seeds collide")
	}
	if DeriveSeed(7, "x") != DeriveSeed(7, "x") {
		t.Error("not deterministic")
	}
	a, b := NewRand(3, "c"), NewRand(3, "c")
	for i := 0; i < 10; i++ {
		if a.Uint64() != b.Uint64() {
			t.Fatal("NewRand not deterministic")
		}
	}
}

func TestCommandQuotesAndDefaults(t *testing.T) {
	o := Options{Seed: 5}
	if got := o.Command(); got != "dialkv sim --strategy primary-backup --seed 5" {
		t.Errorf("defaults: %q", got)
	}
	o.Latency = "mix:0.5*exp:1ms+0.5*const:2ms"
	o.Params = map[string]string{"b": "2", "a": "x y"}
	got := o.Command()
	if !strings.Contains(got, "--latency mix:0.5*exp:1ms+0.5*const:2ms") && !strings.Contains(got, "'mix:0.5*exp:1ms+0.5*const:2ms'") {
		t.Errorf("latency not rendered: %q", got)
	}
	if !strings.Contains(got, "--params 'a=x y,b=2'") {
		t.Errorf("params not quoted in key order: %q", got)
	}
	for _, v := range []Verdict{Pass, Safety, Liveness} {
		if v.ExitCode() < 0 || v.ExitCode() > 2 {
			t.Errorf("%s exit %d", v, v.ExitCode())
		}
	}
}

// TestDefaultLivenessBound: a run that names no liveness bound gets 10 s, or
// three times its liveness phase's expected length when that is longer (at
// 1 s of think time the fixed 10 s ended healthy runs as liveness failures:
// `dialkv sim --nodes 5 --seed 1 --think 1s` before this); the derived bound
// is a default, so the reproduce command leaves it out, and a bound given
// explicitly is kept and printed.
func TestDefaultLivenessBound(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want time.Duration
	}{
		{"defaults", Options{Seed: 1}, 10 * time.Second},
		{"think 100ms", Options{Seed: 1, Think: 100 * time.Millisecond}, 12 * time.Second},
		{"think 1s", Options{Seed: 1, Think: time.Second}, 120 * time.Second},
		{"think 1s, 20 clients", Options{Seed: 1, Think: time.Second, Clients: 20}, 30 * time.Second},
		{"explicit", Options{Seed: 1, Think: time.Second, LivenessBound: 5 * time.Second}, 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.o.Normalize()
			if n.LivenessBound != tc.want {
				t.Errorf("liveness bound %v, want %v", n.LivenessBound, tc.want)
			}
			printed := strings.Contains(tc.o.Command(), "--liveness-bound")
			if explicit := tc.o.LivenessBound != 0; printed != explicit {
				t.Errorf("command %q: --liveness-bound printed %v, want %v", tc.o.Command(), printed, explicit)
			}
		})
	}
}
