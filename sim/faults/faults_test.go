package faults

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

func rnd(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed)) }

func TestParseKinds(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want int
		bad  bool
	}{
		{nil, len(DefaultKinds()), false},
		{[]string{"none"}, 0, false},
		{[]string{"all"}, len(Kinds()), false},
		{[]string{"crash", "crash", "partition"}, 2, false},
		{[]string{"meteor"}, 0, true},
	} {
		got, err := ParseKinds(tc.in)
		if (err != nil) != tc.bad || len(got) != tc.want {
			t.Errorf("ParseKinds(%v) = %v, %v", tc.in, got, err)
		}
	}
}

func TestDrawRates(t *testing.T) {
	kinds := []Kind{Crash, Drop}
	a, err := DrawRates(kinds, nil, rnd(1))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DrawRates(kinds, nil, rnd(1))
	if !reflect.DeepEqual(a, b) {
		t.Error("same seed, different rates")
	}
	if a["partition/s"] != 0 || a["dup"] != 0 {
		t.Errorf("disabled kinds got rates: %v", a)
	}
	fixed, _ := DrawRates(kinds, map[string]float64{"crash/s": 7}, rnd(1))
	if fixed["crash/s"] != 7 || fixed["drop"] != a["drop"] {
		t.Errorf("fixing crash/s changed other rates or was ignored: %v vs %v", fixed, a)
	}
	if _, err := DrawRates(kinds, map[string]float64{"nope": 1}, rnd(1)); err == nil {
		t.Error("unknown rate accepted")
	}
	// Swarm: over many seeds every enabled kind is sometimes on and
	// sometimes off.
	on, off := 0, 0
	for s := uint64(0); s < 200; s++ {
		r, _ := DrawRates(kinds, nil, rnd(s))
		if r["crash/s"] > 0 {
			on++
		} else {
			off++
		}
	}
	if on == 0 || off == 0 {
		t.Errorf("crash on in %d, off in %d of 200 seeds", on, off)
	}
}

func TestDrawPlan(t *testing.T) {
	kinds := []Kind{Crash, Partition, Clog, Pause, Skew}
	rates := Rates{"crash/s": 3, "partition/s": 3, "clog/s": 3, "pause/s": 3, "skew-ms": 100, "drift-ppm": 100, "fault-mean-ms": 100}
	p, err := Draw(kinds, rates, 5, 10*time.Second, rnd(9))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Faults) < 40 {
		t.Fatalf("12 faults/s over 10 s gave only %d faults", len(p.Faults))
	}
	seen := map[Kind]bool{}
	for i, f := range p.Faults {
		seen[f.Kind] = true
		if f.At >= 10*time.Second || (i > 0 && f.At < p.Faults[i-1].At) {
			t.Fatalf("fault %d at %v out of order or beyond the horizon", i, f.At)
		}
		if f.Node < 0 || f.Node >= 5 || (f.Kind == Clog && f.To == f.Node) {
			t.Fatalf("bad fault %v", f)
		}
		if f.String() == "" {
			t.Fatal("empty description")
		}
	}
	for _, k := range []Kind{Crash, Partition, Clog, Pause} {
		if !seen[k] {
			t.Errorf("no %s fault drawn", k)
		}
	}
	skewed := false
	for _, c := range p.Clocks {
		if c.Offset > 100*time.Millisecond || c.Offset < -100*time.Millisecond {
			t.Errorf("offset %v beyond skew-ms", c.Offset)
		}
		skewed = skewed || c.Offset != 0
	}
	if !skewed {
		t.Error("no clock skewed")
	}
	k := p.Keep([]int{2, 0})
	if len(k.Faults) != 2 || k.Faults[0].String() != p.Faults[0].String() || k.Faults[1].String() != p.Faults[2].String() {
		t.Errorf("Keep([2,0]) = %v", k.Faults)
	}
	if len(p.Keep([]int{}).Faults) != 0 || len(p.Keep(nil).Faults) != len(p.Faults) {
		t.Error("Keep of none / nil")
	}
}
