package simrun

import (
	"strings"
	"testing"
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
