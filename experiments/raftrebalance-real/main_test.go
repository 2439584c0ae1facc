package main

import (
	"testing"

	"github.com/dialkv/dialkv/nodes"
)

func TestBalanced(t *testing.T) {
	three := []string{"n1", "n2", "n3"}
	four := []string{"n1", "n2", "n3", "n4"}
	for _, tc := range []struct {
		name    string
		members map[int][]string
		stale   map[string][]int
		shards  int
		on      []string
		want    bool
	}{
		{"initial, 2 shards on 3 nodes", map[int][]string{0: {"n1", "n2", "n3"}, 1: {"n1", "n2", "n3"}}, nil, 2, three, true},
		{"n4 added but empty", map[int][]string{0: {"n1", "n2", "n3"}, 1: {"n1", "n2", "n3"}}, nil, 2, four, false},
		{"one moved to n4", map[int][]string{0: {"n2", "n3", "n4"}, 1: {"n1", "n2", "n3"}}, nil, 2, four, true},
		{"a stale replica left", map[int][]string{0: {"n2", "n3", "n4"}, 1: {"n1", "n2", "n3"}}, map[string][]int{"n1": {0}}, 2, four, false},
		{"a shard with 4 members", map[int][]string{0: {"n1", "n2", "n3", "n4"}, 1: {"n1", "n2", "n3"}}, nil, 2, four, false},
		{"retired n1 still a member", map[int][]string{0: {"n2", "n3", "n4"}, 1: {"n1", "n2", "n3"}}, nil, 2, []string{"n2", "n3", "n4"}, false},
		{"a shard missing", map[int][]string{0: {"n2", "n3", "n4"}}, nil, 2, []string{"n2", "n3", "n4"}, false},
	} {
		got, load := balanced(nodes.RaftPlacement{Members: tc.members, Stale: tc.stale}, tc.shards, tc.on)
		if got != tc.want {
			t.Errorf("%s: balanced = %v (load %v), want %v", tc.name, got, load, tc.want)
		}
	}
}

func TestMoved(t *testing.T) {
	before := map[int][]string{0: {"n1", "n2", "n3"}, 1: {"n1", "n2", "n3"}}
	after := map[int][]string{0: {"n2", "n3", "n4"}, 1: {"n2", "n3", "n4"}}
	if got := moved(before, after); got != 2 {
		t.Errorf("moved = %d, want 2", got)
	}
	if got := moved(before, before); got != 0 {
		t.Errorf("moved(same) = %d, want 0", got)
	}
}
