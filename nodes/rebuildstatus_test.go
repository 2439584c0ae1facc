package nodes

import (
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
)

// TestFormatRebuild: the lines dialkv admin rebuild prints for a rebuild
// under way, one finished with a loss, re-sent writes and held keys, a
// node seeding another's rebuild and applying a gone notice, and a node
// that never rebuilt.
func TestFormatRebuild(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	lost := causal.LostVersion{Key: "k", V: causal.Version{Wall: 5, Node: "n2"}, Region: "r2"}
	for _, tc := range []struct {
		name string
		st   causal.RebuildStatus
		want []string
	}{
		{"under way", causal.RebuildStatus{Rebuilding: true, Waiting: []consistency.NodeID{"n4"}, SeededBy: []consistency.NodeID{"n3"}, Partial: []consistency.NodeID{"n3"}, Seeded: 7, Refused: 3, RefusedKeys: 2, Began: t0, Progress: t0.Add(time.Second)},
			[]string{"n2 c: REBUILDING since 2026-12-07T15:00:00.000Z (last progress 2026-12-07T15:00:01.000Z): waiting for n4; seeded by n3 (partial: n3); 7 seeds; 3 requests refused (2 keys)"}},
		{"finished", causal.RebuildStatus{SeededBy: []consistency.NodeID{"n3", "n4"}, Seeded: 7, Began: t0, Finished: t0.Add(2 * time.Second), Lost: []causal.LostVersion{lost}, Resent: 3, Held: 2},
			[]string{"n2 c: rebuilt 2026-12-07T15:00:00.000Z → 2026-12-07T15:00:02.000Z; seeded by n3,n4 (partial: -); 7 seeds; 0 requests refused (0 keys); 1 versions lost; 3 re-sent from a surviving copy", "  lost: " + lost.String(),
				"  2 keys still refused: each waits for a write (of it, or one it depends on) that another rebuilding region holds"}},
		{"seeding", causal.RebuildStatus{Feeding: []consistency.NodeID{"n1"}, GoneApplied: 2, ReplacedApplied: 1},
			[]string{"n2 c: serving (no rebuild since it started)", "  seeding the rebuild of n1", "  gone notices applied: 2 (other nodes' lost writes)",
				"  replaced writes applied: 1 (other nodes' re-sent writes that newer writes replaced; not lost)"}},
	} {
		if got := FormatRebuild("n2", "c", tc.st); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
}
