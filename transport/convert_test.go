package transport

import (
	"reflect"
	"testing"

	"github.com/dialkv/dialkv/core"
)

// TestRepliesFromCore: a batch's replies converted together are those
// ReplyFromCore gives one by one, for every kind of reply, with and
// without versions and siblings; no two replies share a version or integer.
func TestRepliesFromCore(t *testing.T) {
	withVersion := func(r core.Reply, v uint64) core.Reply { r.Version = v; return r }
	replies := []core.Reply{
		core.OK(),
		withVersion(core.Bulk([]byte("v")), 7),
		core.Nil(),
		withVersion(core.Int(-3), 9),
		core.Int(5),
		{Kind: core.KindBulk},
		withVersion(core.Reply{Kind: core.KindFloat, Float: 1.5}, 2),
		core.Array(core.Int(1), core.Bulk([]byte("x"))),
		core.ErrorReply(core.Errorf(core.CodeErr, "boom")),
		withVersion(core.Int(11), 12),
	}
	siblings := [][]byte{[]byte("a"), []byte("b")}
	sib := func(i int) [][]byte {
		if i == 1 {
			return siblings
		}
		return nil
	}
	got := RepliesFromCore(len(replies), func(i int) (core.Reply, [][]byte) { return replies[i], sib(i) })
	if len(got) != len(replies) {
		t.Fatalf("%d replies, want %d (reproduce: go test -run TestRepliesFromCore ./transport)", len(got), len(replies))
	}
	seen := map[*int64]int{}
	for i, r := range replies {
		want := ReplyFromCore(r, sib(i))
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("reply %d: %+v, want %+v (reproduce: go test -run TestRepliesFromCore ./transport)", i, got[i], want)
		}
		for _, p := range []*int64{got[i].Version, got[i].IntVal} {
			if p == nil {
				continue
			}
			if j, ok := seen[p]; ok {
				t.Errorf("replies %d and %d share an int64 (reproduce: go test -run TestRepliesFromCore ./transport)", j, i)
			}
			seen[p] = i
		}
	}
	if len(RepliesFromCore(0, nil)) != 0 {
		t.Error("replies for an empty batch")
	}
}
