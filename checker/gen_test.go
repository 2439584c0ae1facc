package checker

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
)

// genHistory generates a linearizable history deterministically from seed:
// a simulated single-copy store whose operations take effect at a random
// point inside their [invoke, complete] interval, so intervals of
// different clients overlap. Keys k0..: 90% registers
// (get/put/cas/delete, unique values, versions), 5% counters (incr/get),
// 5% sets (sadd of unique elements, smembers). About 1% of writes have an
// unknown outcome (taking effect or not, at random).
func genHistory(seed uint64, nOps, nKeys, nClients int) []Op {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	type pending struct {
		op Op
		lp int64 // linearization point
		ap bool  // takes effect (for unknown writes)
	}
	ps := make([]pending, 0, nOps)
	clock := make([]int64, nClients)
	for i := 0; i < nOps; i++ {
		c := rng.IntN(nClients)
		inv := clock[c] + 1 + rng.Int64N(20)
		dur := 1 + rng.Int64N(100)
		k := rng.IntN(nKeys)
		key := "k" + strconv.Itoa(k)
		op := Op{Client: c, Session: "s" + strconv.Itoa(c), Key: key, Invoke: inv, Outcome: OK, Node: "n" + strconv.Itoa(rng.IntN(3))}
		switch kind := k * 100 / nKeys; {
		case kind < 90:
			switch r := rng.IntN(100); {
			case r < 50:
				op.F = FGet
			case r < 80:
				op.F, op.Args = FPut, []string{fmt.Sprintf("v%d", i)}
			case r < 95:
				op.F, op.Args = FCAS, []string{"", fmt.Sprintf("v%d", i)} // expected filled in below
			default:
				op.F = FDelete
			}
		case kind < 95:
			if rng.IntN(2) == 0 {
				op.F, op.Args = FIncr, []string{strconv.Itoa(1 + rng.IntN(5))}
			} else {
				op.F = FGet
			}
		default:
			if rng.IntN(4) > 0 {
				op.F, op.Args = FSAdd, []string{fmt.Sprintf("e%d", i)}
			} else {
				op.F = FSMembers
			}
		}
		p := pending{op: op, lp: inv + rng.Int64N(dur+1), ap: true}
		comp := inv + dur
		p.op.Complete = Int64Ptr(comp)
		if op.F != FGet && op.F != FSMembers && rng.IntN(100) == 0 {
			p.op.Outcome, p.op.Complete = Unknown, nil
			p.ap = rng.IntN(2) == 0
		}
		clock[c] = comp
		ps = append(ps, p)
	}
	// Apply in linearization order to a single copy.
	order := make([]int, len(ps))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return ps[order[a]].lp < ps[order[b]].lp })
	type cell struct {
		val     *string
		members map[string]bool
		version uint64
	}
	state := map[string]*cell{}
	for _, i := range order {
		p := &ps[i]
		op := &p.op
		c := state[op.Key]
		if c == nil {
			c = &cell{members: map[string]bool{}}
			state[op.Key] = c
		}
		switch op.F {
		case FGet:
			if c.val != nil {
				op.Value = StrPtr(*c.val)
			}
			op.Version = c.version
		case FPut:
			if p.ap {
				c.version++
				c.val = StrPtr(op.Args[0])
				op.Version = c.version
			}
		case FDelete:
			if p.ap {
				c.version++
				c.val = nil
				op.Version = c.version
			}
		case FCAS:
			// expect the current value half the time, else a stale one
			if c.val != nil && rng.IntN(2) == 0 {
				op.Args[0] = *c.val
			} else {
				op.Args[0] = fmt.Sprintf("v%d", rng.IntN(len(ps)))
			}
			if c.val != nil && *c.val == op.Args[0] {
				if p.ap {
					c.version++
					c.val = StrPtr(op.Args[1])
					op.Version = c.version
				}
			} else if op.Outcome == OK {
				op.Outcome, op.Error = Fail, "CONDFAILED value differs"
			}
		case FIncr:
			if p.ap {
				n := int64(0)
				if c.val != nil {
					n, _ = strconv.ParseInt(*c.val, 10, 64)
				}
				d, _ := strconv.ParseInt(op.Args[0], 10, 64)
				n += d
				c.val = StrPtr(strconv.FormatInt(n, 10))
				op.Int = Int64Ptr(n)
			}
		case FSAdd:
			if p.ap {
				c.members[op.Args[0]] = true
				op.Int = Int64Ptr(1)
			}
		case FSMembers:
			op.Values = []string{}
			for m := range c.members {
				op.Values = append(op.Values, m)
			}
			sort.Strings(op.Values)
		}
		if op.Outcome == Unknown {
			op.Int, op.Version = nil, 0
		}
	}
	// Invocation order, ids in that order.
	sort.SliceStable(ps, func(a, b int) bool { return ps[a].op.Invoke < ps[b].op.Invoke })
	out := make([]Op, len(ps))
	for i := range ps {
		out[i] = ps[i].op
		out[i].ID = int64(i)
	}
	return out
}
