package netmodel

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestParseDistRoundTrip(t *testing.T) {
	for _, spec := range []string{"const:1ms", "uniform:1ms-5ms", "exp:2ms", "pareto:1ms,1.5", "mix:0.9*exp:1ms+0.1*pareto:5ms,1.2"} {
		d, err := ParseDist(spec)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if d.String() != spec {
			t.Errorf("ParseDist(%q).String() = %q", spec, d.String())
		}
	}
	for _, bad := range []string{"", "exp", "exp:-1ms", "uniform:5ms-1ms", "pareto:1ms", "pareto:1ms,0", "mix:0*exp:1ms", "mix:exp:1ms", "zipf:1"} {
		if _, err := ParseDist(bad); err == nil {
			t.Errorf("ParseDist(%q) accepted", bad)
		}
	}
}

func TestDistMeans(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		spec     string
		lo, hi   time.Duration // bounds on the sample mean
		min, max time.Duration // bounds on every sample
	}{
		{"const:3ms", 3 * time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond, 3 * time.Millisecond},
		{"uniform:1ms-3ms", 1900 * time.Microsecond, 2100 * time.Microsecond, time.Millisecond, 3 * time.Millisecond},
		{"exp:2ms", 1900 * time.Microsecond, 2100 * time.Microsecond, 0, time.Hour},
		// Pareto(1ms, 3) has mean 1.5 ms.
		{"pareto:1ms,3", 1400 * time.Microsecond, 1600 * time.Microsecond, time.Millisecond, time.Second},
		{"mix:0.5*const:1ms+0.5*const:3ms", 1900 * time.Microsecond, 2100 * time.Microsecond, time.Millisecond, 3 * time.Millisecond},
	} {
		d, _ := ParseDist(tc.spec)
		var sum time.Duration
		const n = 40000
		for i := 0; i < n; i++ {
			s := d.Sample(r)
			if s < tc.min || s > tc.max {
				t.Fatalf("%s: sample %v outside [%v, %v]", tc.spec, s, tc.min, tc.max)
			}
			sum += s
		}
		if m := sum / n; m < tc.lo || m > tc.hi {
			t.Errorf("%s: mean %v outside [%v, %v]", tc.spec, m, tc.lo, tc.hi)
		}
	}
}

func TestCutShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const n = 5
	for i := 0; i < 50; i++ {
		for _, sh := range Shapes() {
			c, err := MakeCut(sh, n, r)
			if err != nil {
				t.Fatal(err)
			}
			cut, oneWay := 0, 0
			for a := 0; a < n; a++ {
				if c.Blocks(a, a) {
					t.Fatalf("%s: a node is cut from itself", sh)
				}
				for b := 0; b < n; b++ {
					if c.Blocks(a, b) {
						cut++
						if !c.Blocks(b, a) {
							oneWay++
						}
					}
				}
			}
			if cut == 0 {
				t.Fatalf("%s cuts nothing: %s", sh, c.Desc)
			}
			switch sh {
			case Asymmetric:
				if oneWay != cut {
					t.Errorf("asymmetric cut has two-way links: %s", c.Desc)
				}
			default:
				if oneWay != 0 {
					t.Errorf("%s has one-way links: %s", sh, c.Desc)
				}
			}
			if sh == IsolateOne && cut != 2*(n-1) {
				t.Errorf("isolate cuts %d links, want %d", cut, 2*(n-1))
			}
			if sh == Bridge {
				// Some node reaches every other node both ways.
				found := false
				for a := 0; a < n && !found; a++ {
					ok := true
					for b := 0; b < n; b++ {
						ok = ok && !c.Blocks(a, b) && !c.Blocks(b, a)
					}
					found = ok
				}
				if !found {
					t.Errorf("bridge without a bridge node: %s", c.Desc)
				}
			}
		}
	}
}

func TestNetFates(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	lat, _ := ParseDist("const:1ms")
	nt := NewNet(3, Spread(3, 1, 1, lat, lat))
	if f := nt.Decide(0, 1, r); len(f.Delays) != 1 || f.Delays[0] != time.Millisecond {
		t.Fatalf("healthy link: %+v", f)
	}
	c, _ := MakeCut(IsolateOne, 3, r)
	id := nt.AddCut(c)
	blocked := 0
	for a := 0; a < 3; a++ {
		for b := 0; b < 3; b++ {
			if len(nt.Decide(a, b, r).Delays) == 0 {
				blocked++
			}
		}
	}
	if blocked != 4 {
		t.Errorf("isolating one of 3 nodes blocked %d links, want 4", blocked)
	}
	if !nt.RemoveCut(id) || nt.Partitioned() || nt.RemoveCut(id) {
		t.Error("RemoveCut did not remove the cut exactly once")
	}
	nt.SetClog(0, 1, true)
	if !nt.Decide(0, 1, r).Held || nt.Decide(1, 0, r).Held {
		t.Error("clog is not one-way")
	}
	if got := nt.UnclogAll(); len(got) != 1 || got[0] != [2]int{0, 1} {
		t.Errorf("UnclogAll = %v", got)
	}
	nt.Drop, nt.Dup = 0.5, 0.5
	drops, dups := 0, 0
	for i := 0; i < 10000; i++ {
		switch len(nt.Decide(0, 1, r).Delays) {
		case 0:
			drops++
		case 2:
			dups++
		}
	}
	if drops < 4500 || drops > 5500 || dups < 2200 || dups > 2800 {
		t.Errorf("drop 0.5 / dup 0.5: %d drops, %d dups of 10000", drops, dups)
	}
}

func TestTopologyLatency(t *testing.T) {
	local, _ := ParseDist("const:1ms")
	cross, _ := ParseDist("const:30ms")
	topo := Spread(4, 2, 1, local, cross)
	r := rand.New(rand.NewPCG(1, 1))
	if d := topo.Latency(0, 2).Sample(r); d != time.Millisecond { // both region 0
		t.Errorf("same region: %v", d)
	}
	if d := topo.Latency(0, 1).Sample(r); d != 30*time.Millisecond {
		t.Errorf("cross region: %v", d)
	}
	topo.Pairs = map[[2]int]Dist{{0, 1}: Constant{50 * time.Millisecond}}
	if d := topo.Latency(0, 1).Sample(r); d != 50*time.Millisecond {
		t.Errorf("pair override: %v", d)
	}
}

func TestParsePairs(t *testing.T) {
	m, err := ParsePairs("0>1=const:80ms; 1>0=pareto:10ms,1.5", 2)
	if err != nil || len(m) != 2 || m[[2]int{0, 1}].String() != "const:80ms" || m[[2]int{1, 0}].String() != "pareto:10ms,1.5" {
		t.Fatalf("ParsePairs = %v, %v", m, err)
	}
	for _, bad := range []string{"0>2=1ms", "0-1=1ms", "a>b=1ms", "0>1=bogus"} {
		if _, err := ParsePairs(bad, 2); err == nil {
			t.Errorf("ParsePairs(%q) accepted", bad)
		}
	}
}
