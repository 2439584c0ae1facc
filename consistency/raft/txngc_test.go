package raft

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
)

// gcWorld is a model of one cross-shard transaction over two shards, A
// (the coordinator shard, 0) and B (1), each a real memory state machine,
// driven by three actors whose steps the test interleaves in every order:
//
//   - the coordinator (Service.runTxn): prepare A, prepare B, decide
//     commit on A, commit A, commit B, acknowledge both on A; it stops
//     (crashes) after any step, and its last step may apply after any
//     later step of the others (a delayed proposal);
//   - a resolver (Service.ResolveTxn) of the intent on one shard: it reads
//     the shard's intents, proposes abort to A with the intent's clock as
//     reference, then applies the answer (and acknowledges a commit);
//   - the recovery sweep (Service.CollectDecisions) on A, once;
//   - a clock jump: both state machine clocks move txnDecisionTTL+1s on
//     (other proposers' entries).
//
// After the interleaving, everything is settled (clocks jump again, every
// intent is resolved, the sweep runs twice) and the checks are: A and B
// both applied the transaction or neither did; a coordinator that finished
// answered what happened; no intent and no decision record is left.
type gcWorld struct {
	t       *testing.T
	sms     [2]*txnSM
	id      TxnID
	start   int64 // the coordinator's clock
	clock   int64 // everyone else's clock
	co      []core.Reply
	coSteps int // steps the coordinator takes before it stops
	res     struct {
		sh    int
		found *IntentInfo
		dec   core.Reply
		step  int
	}
	noTTL bool // the broken variant: decisions never refused (the test must fail)
}

func newGCWorld(t *testing.T, coSteps, resolverShard int) *gcWorld {
	w := &gcWorld{t: t, id: tid(1), start: time.Unix(1000, 0).UnixNano(), coSteps: coSteps}
	w.clock = w.start
	for i := range w.sms {
		m, err := newMemSM(core.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		w.sms[i] = wrapMem(t, m)
	}
	w.res.sh = resolverShard
	return w
}

func (w *gcWorld) op(sh int, o txnOp, now int64) core.Reply {
	if w.noTTL && o.op == txnOpDecide && o.decision == decisionCommit {
		o.ref = now + int64(100*txnDecisionTTL) // never too old
	}
	return w.sms[sh].proposeAt(proposal{tx: &o}, now)
}

// coordStep runs the coordinator's next step; false when it has none.
func (w *gcWorld) coordStep() bool {
	step := len(w.co)
	committed := step > 2 && w.co[2].Kind == core.KindInt && w.co[2].Int == 1
	now := w.start + int64(step) // the coordinator's clock barely moves
	var r core.Reply
	switch {
	case step == 0, step == 1:
		c := core.Cmd("SET", []string{"a", "b"}[step], "new")
		o := txnOp{op: txnOpPrepare, id: w.id, coord: 0, part: core.Txn{Cmds: []core.Command{c}}}
		r = w.op(step, o, w.start) // prepares are stamped with start
	case step == 2:
		if w.co[0].IsError() || w.co[1].IsError() {
			return false // (no vote: not in this model)
		}
		r = w.op(0, txnOp{op: txnOpDecide, id: w.id, decision: decisionCommit, ref: w.start, shards: []int{0, 1}}, now)
	case step == 3, step == 4:
		o := txnOp{op: txnOpAbort, id: w.id}
		if committed {
			o.op = txnOpCommit
		}
		r = w.op(step-3, o, now)
	case step == 5 && committed:
		for _, c := range w.co[3:5] {
			if c.IsError() && c.Err.Code != CodeTxnUnknown {
				return false
			}
		}
		r = w.op(0, txnOp{op: txnOpAck, id: w.id, shards: []int{0, 1}}, now)
	default:
		return false
	}
	w.co = append(w.co, r)
	return true
}

// answered is the coordinator's answer to its client: "" while it has not
// finished, else "commit" or "abort".
func (w *gcWorld) answered() string {
	if len(w.co) < 5 {
		return ""
	}
	if w.co[2].Int == 1 {
		return "commit"
	}
	return "abort"
}

// resolverStep runs the resolver's next step.
func (w *gcWorld) resolverStep() {
	r := &w.res
	defer func() { r.step++ }()
	switch r.step {
	case 0:
		for _, in := range w.sms[r.sh].intents() {
			if in.ID == w.id {
				in := in
				r.found = &in
			}
		}
	case 1:
		if r.found != nil {
			r.dec = w.op(0, txnOp{op: txnOpDecide, id: w.id, decision: decisionAbort, ref: r.found.Now}, w.clock)
		}
	case 2:
		if r.found != nil {
			w.apply(r.sh, r.dec)
		}
	}
}

// apply applies decision answer d on shard sh as ResolveTxn does.
func (w *gcWorld) apply(sh int, d core.Reply) {
	if d.Kind == core.KindInt && d.Int == 1 {
		c := w.op(sh, txnOp{op: txnOpCommit, id: w.id}, w.clock)
		if !c.IsError() || c.Err.Code == CodeTxnUnknown {
			w.op(0, txnOp{op: txnOpAck, id: w.id, shards: []int{sh}}, w.clock)
		}
		return
	}
	w.op(sh, txnOp{op: txnOpAbort, id: w.id}, w.clock)
}

// sweep is CollectDecisions on A (every commit record counts as old).
func (w *gcWorld) sweep() {
	view := w.sms[0].lookup(txnDecisionsQuery{}).(decisionsView)
	expired := false
	for _, d := range view.Decisions {
		switch {
		case d.Commit && len(d.Left) > 0:
			for _, sh := range d.Left {
				w.apply(sh, core.Int(1))
			}
		case !d.Commit && view.Clock > d.Ref+int64(txnDecisionTTL):
			expired = true
		}
	}
	if expired {
		w.op(0, txnOp{op: txnOpCollect}, w.clock)
	}
}

// jump moves both state machine clocks past txnDecisionTTL.
func (w *gcWorld) jump() {
	w.clock += int64(txnDecisionTTL + time.Second)
	for sh := range w.sms {
		c := core.Cmd("SET", "tick", "x")
		w.sms[sh].proposeAt(proposal{cmd: &c}, w.clock)
	}
}

// settle resolves everything left and checks the outcome.
func (w *gcWorld) settle() error {
	w.jump()
	for sh := range w.sms {
		for _, in := range w.sms[sh].intents() {
			d := w.op(0, txnOp{op: txnOpDecide, id: in.ID, decision: decisionAbort, ref: in.Now}, w.clock)
			w.apply(sh, d)
		}
	}
	w.sweep()
	w.jump()
	w.sweep()
	a, b := w.sms[0].get("a"), w.sms[1].get("b")
	if a != b {
		return fmt.Errorf("half a transaction: a=%s b=%s", a, b)
	}
	switch w.answered() {
	case "commit":
		if a != "new" {
			return fmt.Errorf("the coordinator answered commit, a=%s", a)
		}
	case "abort":
		if a != "(nil)" {
			return fmt.Errorf("the coordinator answered abort, a=%s", a)
		}
	}
	for sh := range w.sms {
		if in := w.sms[sh].intents(); len(in) != 0 {
			return fmt.Errorf("shard %d keeps intents %v", sh, in)
		}
	}
	if d := w.sms[0].lookup(txnDecisionsQuery{}).(decisionsView).Decisions; len(d) != 0 {
		return fmt.Errorf("decision records left: %+v", d)
	}
	return nil
}

// interleavings calls f with every order of the actors' steps: counts[i]
// steps of actor i, each actor's steps in order.
func interleavings(counts []int, f func(order []int)) {
	left := slices.Clone(counts)
	total := 0
	for _, c := range counts {
		total += c
	}
	order := make([]int, 0, total)
	var rec func()
	rec = func() {
		if len(order) == total {
			f(order)
			return
		}
		for i := range left {
			if left[i] > 0 {
				left[i]--
				order = append(order, i)
				rec()
				order = order[:len(order)-1]
				left[i]++
			}
		}
	}
	rec()
}

// runGCInterleavings runs every stride-th interleaving of the model (1:
// all of them); it returns how many it ran and the first failure.
func runGCInterleavings(t *testing.T, noTTL bool, stride int) (int, error) {
	const (
		coord = iota
		resolver
		sweeper
		clock
	)
	names := []string{"coordinator", "resolver", "sweep", "clock jump"}
	runs, seen := 0, 0
	var first error
	for coSteps := 0; coSteps <= 6; coSteps++ {
		for _, resSh := range []int{0, 1} {
			interleavings([]int{coSteps, 3, 1, 1}, func(order []int) {
				seen++
				if first != nil || seen%stride != 0 {
					return
				}
				runs++
				w := newGCWorld(t, coSteps, resSh)
				w.noTTL = noTTL
				var trace []string
				for _, a := range order {
					trace = append(trace, names[a])
					switch a {
					case coord:
						w.coordStep()
					case resolver:
						w.resolverStep()
					case sweeper:
						w.sweep()
					case clock:
						w.jump()
					}
				}
				if err := w.settle(); err != nil {
					first = fmt.Errorf("coordinator stops after %d steps, resolver of shard %d; order: %s: %w",
						coSteps, resSh, strings.Join(trace, ", "), err)
				}
			})
		}
	}
	return runs, first
}

// TestDecisionCollectionInterleavings: in every interleaving of a
// coordinator that stops after any step (its last proposal possibly
// applying late), a resolver, the collection sweep and a clock jump past
// txnDecisionTTL, the transaction is applied on both shards or neither,
// a coordinator that finished answered the truth, and every decision
// record is collected in the end. make test runs every 5th interleaving
// (about a second); DIALKV_SOAK=1 runs all of them.
func TestDecisionCollectionInterleavings(t *testing.T) {
	stride := 5
	if os.Getenv("DIALKV_SOAK") != "" {
		stride = 1
	}
	n, err := runGCInterleavings(t, false, stride)
	if err != nil {
		t.Fatalf("%v (go test -run TestDecisionCollectionInterleavings ./consistency/raft)", err)
	}
	t.Logf("%d interleavings", n)
}

// TestDecisionCollectionNeedsTTL: without the rule that refuses a commit
// decision past txnDecisionTTL, collecting abort records lets a late
// commit decision apply half a transaction, and the model finds it.
func TestDecisionCollectionNeedsTTL(t *testing.T) {
	n, err := runGCInterleavings(t, true, 5)
	if err == nil {
		t.Fatalf("%d interleavings without the TTL rule passed; the model cannot see the collection hazard", n)
	}
	t.Logf("found after %d interleavings: %v", n, err)
}
