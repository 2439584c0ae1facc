package checker

import (
	"math/rand/v2"
	"testing"
)

// refLinearizable decides linearizability of a one-key register history by
// exhaustive search (independent of Porcupine and of KVModel): operations
// are placed one by one, an operation only after every operation that
// completed before it was invoked; unknown writes may be placed or never.
func refLinearizable(ops []Op) bool {
	var live []Op
	for _, op := range ops {
		if op.Outcome == Fail && !isCondFailed(&op) {
			continue
		}
		if op.F == FGet && op.Outcome != OK {
			continue
		}
		live = append(live, op)
	}
	n := len(live)
	type st struct {
		mask    int
		present bool
		val     string
	}
	memo := map[st]bool{}
	var search func(mask int, present bool, val string) bool
	search = func(mask int, present bool, val string) bool {
		done := true
		for i := 0; i < n; i++ {
			if mask&(1<<i) == 0 && live[i].Outcome != Unknown {
				done = false
			}
		}
		if done {
			return true
		}
		key := st{mask, present, val}
		if v, ok := memo[key]; ok {
			return v
		}
		res := false
		for i := 0; i < n && !res; i++ {
			if mask&(1<<i) != 0 {
				continue
			}
			// every remaining op that completed before i was invoked must go first
			ok := true
			for j := 0; j < n; j++ {
				if j != i && mask&(1<<j) == 0 && live[j].Complete != nil && *live[j].Complete < live[i].Invoke {
					ok = false
				}
			}
			if !ok {
				continue
			}
			op := live[i]
			np, nv := present, val
			legal := true
			switch op.F {
			case FGet:
				legal = (op.Value != nil) == present && (op.Value == nil || *op.Value == val)
			case FPut:
				np, nv = true, op.Args[0]
			case FDelete:
				np, nv = false, ""
			case FCAS:
				match := present && val == op.Args[0]
				switch {
				case isCondFailed(&op):
					legal = !match
				case op.Outcome == OK:
					legal = match
					np, nv = true, op.Args[1]
				case match:
					np, nv = true, op.Args[1]
				}
			}
			if legal && search(mask|1<<i, np, nv) {
				res = true
			}
		}
		memo[key] = res
		return res
	}
	return search(0, false, "")
}

// randomRegisterHistory: 3 clients, 2-7 operations on one key over the
// values a, b, c (not unique), with overlapping intervals, unknown writes
// and cas that succeed or report CONDFAILED at random.
func randomRegisterHistory(rng *rand.Rand) []Op {
	vals := []string{"a", "b", "c"}
	n := 2 + rng.IntN(6)
	clock := make([]int64, 3)
	var ops []Op
	for i := 0; i < n; i++ {
		c := rng.IntN(3)
		inv := clock[c] + int64(rng.IntN(10))
		op := Op{Client: c, Key: "x", Invoke: inv, Outcome: OK}
		comp := inv + 1 + int64(rng.IntN(20))
		op.Complete = Int64Ptr(comp)
		clock[c] = comp
		switch r := rng.IntN(10); {
		case r < 4:
			op.F = FGet
			if v := rng.IntN(4); v < 3 {
				op.Value = StrPtr(vals[v])
			}
		case r < 7:
			op.F, op.Args = FPut, []string{vals[rng.IntN(3)]}
		case r < 8:
			op.F = FDelete
		default:
			op.F, op.Args = FCAS, []string{vals[rng.IntN(3)], vals[rng.IntN(3)]}
			if rng.IntN(2) == 0 {
				op.Outcome, op.Error = Fail, "CONDFAILED"
			}
		}
		if op.F != FGet && op.Outcome == OK && rng.IntN(4) == 0 {
			op.Outcome, op.Complete = Unknown, nil
			clock[c] = inv + 1000 // the client is gone
		}
		ops = append(ops, op)
	}
	for i := range ops {
		ops[i].ID = int64(i)
	}
	return ops
}

// TestLinearizableMatchesReference compares the Porcupine-based check
// (model, conversion of unknown and CONDFAILED operations, pruning) with
// exhaustive search on thousands of small random histories.
func TestLinearizableMatchesReference(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 600
	}
	var ok, bad int
	for seed := uint64(0); seed < uint64(n); seed++ {
		rng := rand.New(rand.NewPCG(seed, 17))
		ops := randomRegisterHistory(rng)
		want := refLinearizable(ops)
		c := Check(ops, nil, Options{Checks: []string{CheckLinearizable}}).Get(CheckLinearizable)
		if got := c.Verdict == VerdictOK; got != want || c.Verdict == VerdictUnknown {
			t.Fatalf("seed %d: checker %s (%s), exhaustive search linearizable=%v\n%s", seed, c.Verdict, c.Summary, want, historyString(ops))
		}
		if want {
			ok++
		} else {
			bad++
		}
	}
	if ok < n/10 || bad < n/10 {
		t.Errorf("unbalanced random histories: %d linearizable, %d not", ok, bad)
	}
	t.Logf("%d linearizable, %d not", ok, bad)
}
