package simexp

import (
	"math"
	"testing"
)

// A trace in each format: the sans-IO simulator's (s.ns) and raftsim's
// (zero-padded ns). Windows open at fault lines and close at heal lines;
// one still open lasts until the end.
func TestPartitionsAndSides(t *testing.T) {
	traces := map[string]string{
		"sansio": "0.000000001 c0 invoke op=0 GET r1 -> n1\n" +
			"0.100000000 sim fault t=100ms partition isolate {n1,n2} | {n3} for 50ms\n" +
			"0.150000000 sim heal partition isolate {n1,n2} | {n3}\n" +
			"0.200000000 sim fault t=200ms partition asymmetric {n3} -/-> {n1,n2} (one way only) for 1s\n",
		"raft": "000000100000000 sim fault #0 t=100ms partition isolate {n1,n2} | {n3} for 50ms\n" +
			"000000150000000 sim heal partition isolate {n1,n2} | {n3}\n" +
			"000000200000000 sim fault #1 t=200ms partition asymmetric {n3} -/-> {n1,n2} (one way only) for 1s\n",
	}
	for name, tr := range traces {
		ws, err := Partitions([]byte(tr), 1e9)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(ws) != 2 || ws[0].From != 1e8 || ws[0].To != 15e7 || ws[1].From != 2e8 || ws[1].To != 1e9 {
			t.Fatalf("%s: windows %+v", name, ws)
		}
		if !ws[1].Blocks(2, 0) || ws[1].Blocks(0, 2) {
			t.Errorf("%s: asymmetric cut should block n3->n1 only", name)
		}
		cases := []struct {
			node int
			at   int64
			want Side
		}{
			{2, 5e7, Whole}, {0, 12e7, Majority}, {2, 12e7, Minority}, {2, 16e7, Whole},
			{2, 3e8, Minority}, {1, 3e8, Majority},
		}
		for _, c := range cases {
			if got := SideAt(ws, 3, c.node, c.at); got != c.want {
				t.Errorf("%s: node %d at %d: %v, want %v", name, c.node, c.at, got, c.want)
			}
		}
	}
}

func TestBridgeAndBadInput(t *testing.T) {
	b, err := parseCut("bridge {n1} ~ {n2} ~ {n3} (last group bridges)")
	if err != nil || !b[[2]int{0, 1}] || !b[[2]int{1, 0}] || b[[2]int{0, 2}] || b[[2]int{2, 1}] {
		t.Fatalf("bridge: %v %v", b, err)
	}
	if _, err := parseCut("symmetric {x1} | {n2}"); err == nil {
		t.Error("bad node name accepted")
	}
	if _, err := Partitions([]byte("1.5 sim fault t=1s partition symmetric {n1} | {n2} for 1s\n"), 10); err == nil {
		t.Error("bad trace time accepted")
	}
}

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, c := range []struct{ q, want float64 }{{0.5, 5}, {0.9, 9}, {0.99, 10}, {0, 1}, {1, 10}} {
		if got := Quantile(xs, c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if !math.IsNaN(Quantile(nil, 0.5)) || F(math.NaN(), 1) != "-" {
		t.Error("empty input should give NaN, shown as -")
	}
}
