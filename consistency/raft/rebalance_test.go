package raft

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
)

// TestPlan: one case per rule of Plan, and the cases where nothing may move.
func TestPlan(t *testing.T) {
	n123 := []string{"n1", "n2", "n3"}
	n1234 := []string{"n1", "n2", "n3", "n4"}
	for _, tt := range []struct {
		name string
		in   PlanInput
		want *Move
	}{
		{"balanced", PlanInput{Replicas: 3, Nodes: n1234, Alive: n1234,
			Members: map[int][]string{0: {"n1", "n2", "n3"}, 1: {"n2", "n3", "n4"}}}, nil},
		{"one shard, a fourth node: off by one is balanced", PlanInput{Replicas: 3, Nodes: n1234, Alive: n1234,
			Members: map[int][]string{0: n123}}, nil},
		{"a new node receives a replica", PlanInput{Replicas: 3, Nodes: n1234, Alive: n1234,
			Members: map[int][]string{0: n123, 1: n123, 2: n123}},
			&Move{Kind: MoveBalance, Shard: 0, From: "n1", To: "n4", Reason: "balance: n1 has 3 replicas, n4 0"}},
		{"dead member replaced, removed first", PlanInput{Replicas: 3, Nodes: n1234, Alive: []string{"n1", "n2", "n4"}, Dead: []string{"n3"},
			Members: map[int][]string{0: n123}},
			&Move{Kind: MoveReplace, Shard: 0, From: "n3", To: "n4", RemoveFirst: true, Reason: "n3 is dead"}},
		{"down within the grace period: nothing", PlanInput{Replicas: 3, Nodes: n1234, Alive: []string{"n1", "n2", "n4"},
			Members: map[int][]string{0: n123}}, nil},
		{"dead member, no target, at the replication factor: kept", PlanInput{Replicas: 3, Nodes: n123, Alive: []string{"n1", "n2"}, Dead: []string{"n3"},
			Members: map[int][]string{0: n123}}, nil},
		{"dead member, no target, above the replication factor: removed", PlanInput{Replicas: 3, Nodes: n1234, Alive: []string{"n1", "n2", "n3"}, Dead: []string{"n4"},
			Members: map[int][]string{0: n1234}},
			&Move{Kind: MoveReplace, Shard: 0, From: "n4", RemoveFirst: true, Reason: "n4 is dead, no other target"}},
		{"no quorum alive: nothing", PlanInput{Replicas: 3, Nodes: n1234, Alive: []string{"n1", "n4"}, Dead: []string{"n2", "n3"},
			Members: map[int][]string{0: n123}}, nil},
		{"retired member moves away, added first", PlanInput{Replicas: 3, Nodes: n1234, Alive: n1234, Retired: []string{"n2"},
			Members: map[int][]string{0: n123}},
			&Move{Kind: MoveReplace, Shard: 0, From: "n2", To: "n4", Reason: "n2 is retired"}},
		{"under-replicated", PlanInput{Replicas: 3, Nodes: n1234, Alive: n1234,
			Members: map[int][]string{0: {"n1", "n2"}, 1: {"n1", "n3", "n4"}}},
			&Move{Kind: MoveAdd, Shard: 0, To: "n3", Reason: "2 of 3 replicas"}},
		{"over-replicated", PlanInput{Replicas: 3, Nodes: n1234, Alive: n1234,
			Members: map[int][]string{0: n1234, 1: {"n1", "n2", "n3"}}},
			&Move{Kind: MoveRemove, Shard: 0, From: "n1", RemoveFirst: true, Reason: "4 of 3 replicas"}},
		{"nodes outside the namespace receive nothing", PlanInput{Replicas: 3, Nodes: n123, Alive: n1234,
			Members: map[int][]string{0: n123, 1: n123}}, nil},
		{"unknown shards are left alone", PlanInput{Replicas: 3, Nodes: n1234, Alive: n1234, Members: map[int][]string{}}, nil},
	} {
		got, ok := Plan(tt.in)
		switch {
		case tt.want == nil && ok:
			t.Errorf("%s: Plan = %v, want no move", tt.name, got)
		case tt.want != nil && (!ok || got != *tt.want):
			t.Errorf("%s: Plan = %+v (%v), want %+v", tt.name, got, ok, *tt.want)
		}
	}
}

// TestPlanConverges: from random placements, nodes joining, dying and
// retiring, applying Plan's moves one by one ends, within a bound, with
// every shard at the replication factor on live, non-retired nodes,
// loads within one of each other; no move ever leaves a shard with fewer
// live members than the replication factor when it had that many.
func TestPlanConverges(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		nNodes := 3 + r.IntN(5)
		var nodes []string
		for i := range nNodes {
			nodes = append(nodes, fmt.Sprintf("n%d", i+1))
		}
		rf := 3
		shards := 1 + r.IntN(8)
		members := map[int][]string{}
		for sh := range shards {
			for _, i := range Placement(sh, rf, 3) { // the initial three nodes
				members[sh] = append(members[sh], nodes[i])
			}
		}
		var alive, dead, retired []string
		for i, n := range nodes {
			switch {
			case i >= 3 && r.IntN(4) == 0 && len(nodes)-len(dead)-len(retired) > rf:
				retired = append(retired, n)
				alive = append(alive, n)
			case i < 3 && r.IntN(6) == 0 && len(dead) == 0 && len(nodes) > rf:
				dead = append(dead, n)
			default:
				alive = append(alive, n)
			}
		}
		in := PlanInput{Replicas: rf, Members: members, Nodes: nodes, Alive: alive, Dead: dead, Retired: retired}
		liveMembers := func(ms []string) int {
			n := 0
			for _, m := range ms {
				if set(alive)[m] && !set(dead)[m] {
					n++
				}
			}
			return n
		}
		steps := 0
		for ; steps < 100; steps++ {
			mv, ok := Plan(in)
			if !ok {
				break
			}
			before := liveMembers(members[mv.Shard])
			ms := append([]string(nil), members[mv.Shard]...)
			if mv.To != "" {
				ms = append(ms, mv.To)
			}
			if mv.From != "" {
				out := ms[:0]
				for _, m := range ms {
					if m != mv.From {
						out = append(out, m)
					}
				}
				ms = out
			}
			members[mv.Shard] = ms
			if after := liveMembers(ms); before >= rf && after < rf {
				t.Fatalf("seed %d: %v leaves shard %d with %d live members (had %d)", seed, mv, mv.Shard, after, before)
			}
		}
		if steps == 100 {
			t.Fatalf("seed %d: no fixed point after 100 moves: %v", seed, members)
		}
		bad := set(append(append([]string(nil), dead...), retired...))
		load := map[string]int{}
		for _, n := range nodes {
			if !bad[n] {
				load[n] = 0
			}
		}
		for sh, ms := range members {
			if len(ms) != rf {
				t.Fatalf("seed %d: shard %d ends with %v", seed, sh, ms)
			}
			for _, m := range ms {
				if bad[m] {
					t.Fatalf("seed %d: shard %d keeps dead or retired %s: %v", seed, sh, m, ms)
				}
				load[m]++
			}
		}
		var ls []int
		for _, l := range load {
			ls = append(ls, l)
		}
		sort.Ints(ls)
		if ls[len(ls)-1]-ls[0] > 1 {
			t.Fatalf("seed %d: loads %v after %d moves: %v", seed, load, steps, members)
		}
		// Deterministic: the same input, the same plan.
		if a, _ := Plan(in); !reflect.DeepEqual(a, func() Move { b, _ := Plan(in); return b }()) {
			t.Fatalf("seed %d: Plan differs on the same input", seed)
		}
	}
}
