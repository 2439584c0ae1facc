package causal

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// TestRemoveDownNodeSeedsFromOtherRegion: regions r1:a1,a2 and r2:b1,b2;
// sessions write chains of keys through every node (each write depends on
// the session's previous ones); once replication settled a2 crashes for
// good and is removed while down (Membership.Down). During the change
// clients keep writing at b1 and b2, and at a1 (refused for the keys a2
// owned, served for the others). The keys a2 owned in r1 are seeded to a1
// from r2's owners. Afterwards every acknowledged write reads back at
// every node, r1 and r2 agree, and each region's stores are causally
// closed (ClosureViolations). The negative control seeds nothing: a1
// lacks a2's keys. Both resolve modes.
func TestRemoveDownNodeSeedsFromOtherRegion(t *testing.T) {
	for _, mode := range []string{ResolveLWW, ResolveSiblings} {
		for _, skip := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/skip-seeds=%v", mode, skip), func(t *testing.T) {
				problems := removeDownScenario(t, mode, skip)
				if skip {
					if len(problems) == 0 {
						t.Fatal("negative control: without seeds the checks still pass; they show nothing")
					}
					t.Logf("without seeds: %d problems, e.g. %v", len(problems), problems[:min(3, len(problems))])
					return
				}
				if len(problems) > 0 {
					t.Fatalf("%d problems, e.g. %v (go test -run TestRemoveDownNodeSeedsFromOtherRegion ./consistency/causal)", len(problems), problems[:min(10, len(problems))])
				}
			})
		}
	}
}

func removeDownScenario(t *testing.T, mode string, skip bool) []string {
	const spec = "r1:a1,a2;r2:b1,b2"
	c := newClusterWith(t, 21, spec, "", map[string]string{"resolve": mode})
	d := &ringDriver{c: c, spec: spec, skipHandoff: skip}
	d.mem = Membership{Members: c.peers}
	d.set(Membership{Version: 1, Members: []consistency.NodeID{"a1", "a2", "b1", "b2"}})
	if skip {
		for _, p := range c.peers {
			c.nodes[p].rep.skipHandoff = true
		}
	}
	acked := map[string]string{}
	toks := make([][]byte, 4)
	lastErr := ""
	write := func(i int, at consistency.NodeID, k, v string) bool {
		r := c.do(at, toks[i%4], "SET", k, v)
		if r.Reply.Err != nil {
			lastErr = r.Reply.Err.Error()
			return false
		}
		toks[i%4] = r.Token
		acked[k] = v
		return true
	}
	nodes := []consistency.NodeID{"a1", "a2", "b1", "b2"}
	for i := 0; i < 160; i++ {
		if !write(i, nodes[i%4], fmt.Sprintf("k%d", i%80), fmt.Sprintf("v%d", i)) {
			t.Fatalf("SET k%d at %s refused before the change", i%80, nodes[i%4])
		}
	}
	c.run(2 * time.Second) // every write reaches the other region
	c.crash("a2")
	movedA2 := 0
	for k := range acked {
		if c.nodes["a1"].rep.owner("r1", k) == "a2" {
			movedA2++
		}
	}
	d.down = []consistency.NodeID{"a2"}
	j := 0
	refusedMoving, served, tokenWaits := 0, 0, 0
	d.change([]consistency.NodeID{"a1", "b1", "b2"}, func(phase string) {
		for _, at := range []consistency.NodeID{"b1", "b2", "a1"} {
			j++
			k := fmt.Sprintf("k%d", (j*7)%80)
			ok := write(j, at, k, fmt.Sprintf("w%d", j))
			switch {
			case at == "a1" && !ok && c.nodes["a1"].rep.keyPaused(k):
				refusedMoving++
			case !ok && strings.Contains(lastErr, "dependencies of the session token"):
				// The session's token depends on writes of keys a2
				// owned: in r1 they are visible once seeded.
				tokenWaits++
			case !ok:
				t.Fatalf("SET %s at %s refused during the change (phase %s), but it does not move there: %s", k, at, phase, lastErr)
			default:
				served++
			}
		}
	})
	d.waitResumed()
	c.run(2 * time.Second)
	t.Logf("%s: %d of 80 keys were a2's; during the change %d writes served, %d refused at a1 (moving keys), %d refused waiting for the token's dependencies", mode, movedA2, served, refusedMoving, tokenWaits)
	var problems []string
	for _, at := range []consistency.NodeID{"a1", "b1", "b2"} {
		for k, want := range acked {
			r := c.do(at, nil, "GET", k)
			got := replyString(r.Reply)
			if mode == ResolveSiblings && len(r.Values) > 1 && containsVal(r.Values, want) {
				got = want // concurrent writes of both regions are kept as siblings
			}
			if got != want {
				problems = append(problems, fmt.Sprintf("GET %s at %s = %s, want %s", k, at, got, want))
			}
		}
	}
	r1, r2 := c.regionDump("r1"), c.regionDump("r2")
	for k, v := range r2 {
		if r1[k] != v {
			problems = append(problems, fmt.Sprintf("key %s: r1 %s, r2 %s", k, r1[k], v))
		}
	}
	bad, err := ClosureViolations(map[string][]core.Engine{"r1": {c.nodes["a1"].eng}, "r2": {c.nodes["b1"].eng, c.nodes["b2"].eng}}, mode == ResolveSiblings)
	if err != nil {
		t.Fatal(err)
	}
	return append(problems, bad...)
}
