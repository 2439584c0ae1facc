package quorum

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	"pgregory.net/rapid"
)

// schedule runs random operations under random partitions, crashes, drops
// and clock skew, then heals everything and lets hinted handoff and
// anti-entropy finish. It returns the cluster and what was acknowledged.
type outcome struct {
	c         *cluster
	acked     map[string]map[string]bool // key → values (SET) or members (SADD)
	incrOK    map[string]int             // key → acknowledged INCRs
	incrMaybe map[string]int             // key → INCRs with unknown outcome
}

func runSchedule(rt *rapid.T, resolve string) outcome { return runScheduleBug(rt, resolve, "") }

func runScheduleBug(rt *rapid.T, resolve, bug string) outcome {
	seed := rapid.Uint64().Draw(rt, "seed")
	nodes := rapid.IntRange(3, 5).Draw(rt, "nodes")
	params := p("resolve", resolve, "max_siblings", "1000", "aae_interval", "100ms", "timeout", "300ms", "suspect_for", "500ms")
	c := newCluster(rt, nodes, params, bug, seed)
	for _, id := range c.ids {
		c.skew[id] = time.Duration(rapid.IntRange(-500, 500).Draw(rt, "skew_"+string(id))) * time.Millisecond
	}
	c.dropP = rapid.SampledFrom([]float64{0, 0.01, 0.1}).Draw(rt, "drop")
	o := outcome{c: c, acked: map[string]map[string]bool{}, incrOK: map[string]int{}, incrMaybe: map[string]int{}}
	keys := []string{"a", "b", "c", "d"}
	pending := map[nodeID]map[uint64][]string{}
	steps := rapid.IntRange(5, 60).Draw(rt, "steps")
	for i := 0; i < steps; i++ {
		at := c.ids[rapid.IntRange(0, nodes-1).Draw(rt, "at")]
		k := rapid.SampledFrom(keys).Draw(rt, "key")
		opts := consistency.Options{R: rapid.IntRange(1, 3).Draw(rt, "r"), W: rapid.IntRange(1, 3).Draw(rt, "w"),
			Strict: rapid.IntRange(0, 4).Draw(rt, "strict") == 0}
		var cmd core.Command
		var rec []string
		switch act := rapid.IntRange(0, 9).Draw(rt, "act"); {
		case act < 5:
			v := fmt.Sprintf("v%d", i)
			if resolve == ResolveCRDT {
				if act < 3 {
					cmd, rec = core.Cmd("SADD", k, v), []string{"sadd", k, v}
				} else {
					cmd, rec = core.Cmd("INCR", "n"+k), []string{"incr", "n" + k}
				}
			} else {
				cmd, rec = core.Cmd("SET", k, v), []string{"set", k, v}
			}
		case act < 7:
			if resolve == ResolveCRDT {
				cmd = core.Cmd("SMEMBERS", k)
			} else {
				cmd = core.Cmd("GET", k)
			}
		case act == 7:
			var g [][]nodeID
			for _, id := range c.ids {
				j := rapid.IntRange(0, 1).Draw(rt, "side")
				for len(g) <= j {
					g = append(g, nil)
				}
				g[j] = append(g[j], id)
			}
			c.partition(g...)
		case act == 8:
			c.heal()
		default:
			c.crash(at) // requests in flight at the crashed node: outcome unknown
			o.settle(map[nodeID]map[uint64][]string{at: pending[at]}, true)
			delete(pending, at)
		}
		if cmd.Name != "" {
			id := c.submit(at, cmd, opts, nil)
			if pending[at] == nil {
				pending[at] = map[uint64][]string{}
			}
			pending[at][id] = rec
		}
		c.run(time.Duration(rapid.IntRange(0, 30).Draw(rt, "pause")) * time.Millisecond)
		o.settle(pending, false)
	}
	c.run(time.Second) // every request completes or times out
	o.settle(pending, true)
	c.heal()
	c.dropP = 0
	c.run(6 * time.Second)
	return o
}

// settle records completed writes; with final, the rest have an unknown
// outcome (a crash lost their coordinator).
func (o *outcome) settle(pending map[nodeID]map[uint64][]string, final bool) {
	for at, m := range pending {
		for id, rec := range m {
			r, ok := o.c.resps[at][id]
			if !ok && !final {
				continue
			}
			delete(m, id)
			if rec == nil {
				continue
			}
			if !ok || isErr(r) {
				if rec[0] == "incr" && (!ok || r.Reply.Err.Code == consistency.CodeTimeout) {
					o.incrMaybe[rec[1]]++
				}
				continue
			}
			switch rec[0] {
			case "incr":
				o.incrOK[rec[1]]++
			default:
				if o.acked[rec[1]] == nil {
					o.acked[rec[1]] = map[string]bool{}
				}
				o.acked[rec[1]][rec[2]] = true
			}
		}
	}
}

// limitChecks sets how many random schedules each property runs unless
// -rapid.checks or RAPID_CHECKS says otherwise: 25 (rapid divides by 5
// under -short), 2000 under DIALKV_SOAK.
func limitChecks(t *testing.T) {
	set := os.Getenv("RAPID_CHECKS") != ""
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "rapid.checks" })
	if set {
		return
	}
	n := "25"
	if os.Getenv("DIALKV_SOAK") != "" {
		n = "2000"
	}
	if err := flag.Set("rapid.checks", n); err != nil {
		t.Fatal(err)
	}
	if err := flag.Set("rapid.nofailfile", "true"); err != nil {
		t.Fatal(err)
	}
}

// After healing, siblings mode keeps every acknowledged blind write (they
// are all concurrent) and all owners agree.
func TestPropSiblingsNoLostWrites(t *testing.T) {
	limitChecks(t)
	rapid.Check(t, siblingsProp(""))
}

// The same property catches read repair that drops siblings.
func TestPropCatchesReadRepairBug(t *testing.T) {
	limitChecks(t)
	old := flag.Lookup("rapid.shrinktime").Value.String()
	flag.Set("rapid.shrinktime", "2s")
	defer flag.Set("rapid.shrinktime", old)
	rec := &recTB{T: t}
	rapid.Check(rec, siblingsProp(BugReadRepairDropsSiblings))
	if !rec.failed {
		t.Fatalf("the no-lost-writes property did not catch %s", BugReadRepairDropsSiblings)
	}
	t.Logf("caught %s: %s", BugReadRepairDropsSiblings, rec.first)
}

// recTB records failures instead of failing the test.
type recTB struct {
	*testing.T
	failed bool
	first  string
}

func (r *recTB) Errorf(f string, a ...any) { r.fail(fmt.Sprintf(f, a...)) }
func (r *recTB) Error(a ...any)            { r.fail(fmt.Sprint(a...)) }
func (r *recTB) Fatalf(f string, a ...any) { r.fail(fmt.Sprintf(f, a...)) }
func (r *recTB) Fatal(a ...any)            { r.fail(fmt.Sprint(a...)) }
func (r *recTB) FailNow()                  { r.fail("FailNow") }
func (r *recTB) Fail()                     { r.fail("Fail") }
func (r *recTB) Failed() bool              { return r.failed }
func (r *recTB) Logf(string, ...any)       {}
func (r *recTB) Log(...any)                {}
func (r *recTB) fail(msg string) {
	if !r.failed {
		r.first = msg
	}
	r.failed = true
}

func siblingsProp(bug string) func(*rapid.T) {
	return func(rt *rapid.T) {
		o := runScheduleBug(rt, ResolveSiblings, bug)
		if d := o.c.divergence(); d != "" {
			o.c.fatalf("replicas diverged after healing: %s", d)
		}
		for k, vs := range o.acked {
			got := o.c.dump(o.c.owners(k)[0])[k]
			for v := range vs {
				if !strings.Contains(got, `"`+v+`"`) {
					o.c.fatalf("acknowledged SET %s=%s lost: key holds %s", k, v, got)
				}
			}
		}
	}
}

// CRDT mode: no acknowledged SADD lost; counters count every acknowledged
// increment and nothing that certainly failed.
func TestPropCRDTNoLostWrites(t *testing.T) {
	limitChecks(t)
	rapid.Check(t, func(rt *rapid.T) {
		o := runSchedule(rt, ResolveCRDT)
		if d := o.c.divergence(); d != "" {
			o.c.fatalf("replicas diverged after healing: %s", d)
		}
		for k, vs := range o.acked {
			got := o.c.dump(o.c.owners(k)[0])[k]
			for v := range vs {
				if !strings.Contains(got, `"`+v+`"`) {
					o.c.fatalf("acknowledged SADD %s %s lost: set is %s", k, v, got)
				}
			}
		}
		for k, n := range o.incrOK {
			var got int
			fmt.Sscanf(o.c.dump(o.c.owners(k)[0])[k], "counter:%d", &got)
			if got < n || got > n+o.incrMaybe[k] {
				o.c.fatalf("counter %s = %d, want %d acknowledged + up to %d unknown", k, got, n, o.incrMaybe[k])
			}
		}
	})
}

// LWW converges too (it may lose writes, by design).
func TestPropLWWConverges(t *testing.T) {
	limitChecks(t)
	rapid.Check(t, func(rt *rapid.T) {
		o := runSchedule(rt, ResolveLWW)
		if d := o.c.divergence(); d != "" {
			o.c.fatalf("replicas diverged after healing: %s", d)
		}
	})
}
