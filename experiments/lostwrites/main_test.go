package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/experiments/internal/expio"
	"github.com/dialkv/dialkv/experiments/internal/simexp"
)

func put(id int64, key, v string, inv, comp int64) checker.Op {
	return checker.Op{ID: id, F: "put", Key: key, Args: []string{v}, Invoke: inv, Complete: &comp, Outcome: checker.OK}
}

func get(id int64, key string, inv, comp int64, vals ...string) checker.Op {
	o := checker.Op{ID: id, F: "get", Key: key, Invoke: inv, Complete: &comp, Outcome: checker.OK}
	if len(vals) == 1 {
		o.Value = &vals[0]
	} else {
		o.Values = vals
	}
	return o
}

// Key a: a then b concurrent (both latest), final read keeps only b: a is
// lost (what LWW does). Key b: two concurrent puts, final read shows both
// siblings: nothing lost. Key c: c1 superseded by c2 in real time: only c2
// counts, and it is kept.
func TestRegisterLossesHandComputed(t *testing.T) {
	ops := []checker.Op{
		put(0, "a", "a1", 0, 10), put(1, "a", "a2", 5, 12),
		put(2, "b", "b1", 0, 10), put(3, "b", "b2", 5, 12),
		put(4, "c", "c1", 0, 10), put(5, "c", "c2", 20, 30),
		get(6, "a", 100, 110, "a2"), get(7, "b", 100, 110, "b1", "b2"), get(8, "c", 100, 110, "c2"),
	}
	got := registerLosses(ops)
	if got != (count{acked: 5, lost: 1}) {
		t.Fatalf("got %+v, want 5 acknowledged latest writes, 1 lost", got)
	}
}

// The set measure comes from the checker: an acknowledged add missing from
// the final read is lost.
func TestSetLosses(t *testing.T) {
	c := func(n int64) *int64 { return &n }
	one := int64(1)
	ops := []checker.Op{
		{ID: 0, F: "sadd", Key: "s0", Args: []string{"x"}, Invoke: 0, Complete: c(1), Outcome: checker.OK, Int: &one},
		{ID: 1, F: "sadd", Key: "s0", Args: []string{"y"}, Invoke: 2, Complete: c(3), Outcome: checker.OK, Int: &one},
		{ID: 2, F: "smembers", Key: "s0", Invoke: 10, Complete: c(11), Outcome: checker.OK, Values: []string{"x"}},
	}
	got, err := setLosses(&simexp.Run{Ops: ops})
	if err != nil || got != (count{acked: 2, lost: 1}) {
		t.Fatalf("got %+v %v, want 2 acknowledged, 1 lost", got, err)
	}
}

// The whole experiment in --quick mode (as `go run ./experiments/lostwrites
// --quick`) writes its files, and LWW on sets loses acknowledged adds
// while the CRDT resolver loses none.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 12 simulations")
	}
	out, err := expio.New(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := run(out, 1, 300, 2, []float64{0, 500}, true); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out.Dir, "lostwrites.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) < 5 || f[0] != "jepsen-set" {
			continue
		}
		switch {
		case f[1] == "lww" && f[4] == "0":
			t.Errorf("lww lost nothing on sets: %s", line)
		case f[1] == "crdt" && f[4] != "0":
			t.Errorf("crdt lost acknowledged adds: %s", line)
		}
	}
	if _, err := os.Stat(filepath.Join(out.Dir, "lost-jepsen-set.png")); err != nil {
		t.Fatal(err)
	}
}
