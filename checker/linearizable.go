package checker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// kvState is the state of one key in the linearizability model: absent, a
// string (registers and counters) or a set (canonical encoding: setState).
// It is comparable, so Porcupine can compare states with ==.
type kvState struct {
	kind byte   // 0 absent, 's' string, 'S' set
	s    string // the string, or the set's encoding
}

// kvInput is one operation as the model sees it.
type kvInput struct {
	f          string
	a0, a1     string
	delta      int64
	condFailed bool // cas that reported CONDFAILED: a read that saw another value
	unknown    bool // outcome unknown: the result is not constrained
}

// kvOutput is what the operation returned.
type kvOutput struct {
	present bool
	val     string
	members []string // sorted, for smembers
	// set is setState(members), made once per operation (smembers):
	// Porcupine steps an operation many times.
	set    kvState
	hasInt bool
	n      int64
}

// setState is the model state of the set of sorted, distinct members m:
// each member as its length (uvarint) and its bytes, in order. Members may
// hold any bytes (the length prefix, unlike a separator, cannot occur
// inside one). An empty set is the absent state.
func setState(m []string) kvState {
	if len(m) == 0 {
		return kvState{}
	}
	n := 0
	for _, e := range m {
		n += binary.MaxVarintLen64 + len(e)
	}
	b := make([]byte, 0, n)
	for _, e := range m {
		b = binary.AppendUvarint(b, uint64(len(e)))
		b = append(b, e...)
	}
	return kvState{kind: 'S', s: string(b)}
}

// nextMember splits the first member off a set's encoding (setState).
func nextMember(enc string) (member, rest string) {
	l, n := uvarintString(enc)
	return enc[n : n+int(l)], enc[n+int(l):]
}

// uvarintString is binary.Uvarint of a string (the encoding is the
// model's own, so always well formed).
func uvarintString(s string) (uint64, int) {
	var x uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 {
			return x | uint64(c)<<(7*i), i + 1
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	return 0, len(s)
}

// setMembers decodes a set state (for descriptions).
func setMembers(st kvState) []string {
	if st.kind != 'S' {
		return nil
	}
	var out []string
	for rest := st.s; rest != ""; {
		var m string
		m, rest = nextMember(rest)
		out = append(out, m)
	}
	return out
}

// setChange is the state after adding (add) or removing e, and whether
// that changed the set: one pass over the encoding, no decoding.
func setChange(st kvState, e string, add bool) (kvState, bool) {
	enc := st.s
	pos := 0 // where e is, or goes
	for rest := enc; rest != ""; {
		m, r := nextMember(rest)
		if m >= e {
			if m == e {
				if add {
					return st, false
				}
				if out := enc[:pos] + r; out != "" {
					return kvState{kind: 'S', s: out}, true
				}
				return kvState{}, true
			}
			break
		}
		pos += len(rest) - len(r)
		rest = r
	}
	if !add {
		return st, false
	}
	b := make([]byte, 0, len(enc)+binary.MaxVarintLen64+len(e))
	b = append(b, enc[:pos]...)
	b = binary.AppendUvarint(b, uint64(len(e)))
	b = append(b, e...)
	b = append(b, enc[pos:]...)
	return kvState{kind: 'S', s: string(b)}, true
}

// kvStep is the sequential specification of one key.
func kvStep(state, input, output interface{}) (bool, interface{}) {
	st := state.(kvState)
	in := input.(kvInput)
	out := output.(kvOutput)
	switch in.f {
	case FGet:
		if st.kind == 'S' {
			return false, st
		}
		if len(out.members) > 1 {
			return false, st // siblings: a register has one value
		}
		if out.present != (st.kind == 's') || (out.present && out.val != st.s) {
			return false, st
		}
		return true, st
	case FPut:
		return true, kvState{kind: 's', s: in.a0}
	case FDelete:
		return true, kvState{}
	case FCAS:
		match := st.kind == 's' && st.s == in.a0
		switch {
		case in.condFailed:
			return !match, st
		case in.unknown:
			if match {
				return true, kvState{kind: 's', s: in.a1}
			}
			return true, st
		default:
			if !match {
				return false, st
			}
			return true, kvState{kind: 's', s: in.a1}
		}
	case FIncr:
		var n int64
		switch st.kind {
		case 'S':
			return false, st
		case 's':
			v, err := strconv.ParseInt(st.s, 10, 64)
			if err != nil {
				return false, st
			}
			n = v
		}
		n += in.delta
		if !in.unknown && out.hasInt && out.n != n {
			return false, st
		}
		return true, kvState{kind: 's', s: strconv.FormatInt(n, 10)}
	case FSAdd, FSRem:
		if st.kind == 's' {
			return false, st
		}
		next, changed := setChange(st, in.a0, in.f == FSAdd)
		if !in.unknown && out.hasInt && (out.n == 1) != changed {
			return false, st
		}
		return true, next
	case FSMembers:
		if st.kind == 's' {
			return false, st
		}
		return out.set == st, st
	}
	return false, st
}

func describeKVOp(input, output interface{}) string {
	in := input.(kvInput)
	out := output.(kvOutput)
	var call string
	switch in.f {
	case FGet, FDelete, FSMembers:
		call = in.f + "()"
	case FCAS:
		call = fmt.Sprintf("cas(%q→%q)", in.a0, in.a1)
	case FIncr:
		call = fmt.Sprintf("incr(%d)", in.delta)
	default:
		call = fmt.Sprintf("%s(%q)", in.f, in.a0)
	}
	switch {
	case in.unknown:
		return call + " → ?"
	case in.condFailed:
		return call + " → CONDFAILED"
	case in.f == FGet && len(out.members) > 1:
		return fmt.Sprintf("%s → siblings %q", call, out.members)
	case in.f == FGet && !out.present:
		return call + " → nil"
	case in.f == FGet:
		return fmt.Sprintf("%s → %q", call, out.val)
	case in.f == FSMembers:
		return fmt.Sprintf("%s → %q", call, out.members)
	case out.hasInt:
		return fmt.Sprintf("%s → %d", call, out.n)
	}
	return call + " → ok"
}

func describeKVState(state interface{}) string {
	st := state.(kvState)
	switch st.kind {
	case 0:
		return "nil"
	case 'S':
		m := setMembers(st)
		q := make([]string, len(m))
		for i, e := range m {
			q[i] = strconv.Quote(e)
		}
		return "{" + strings.Join(q, ",") + "}"
	}
	return strconv.Quote(st.s)
}

// KVModel is the Porcupine model of one key: a register/counter (get, put,
// delete, cas, incr) or a set (sadd, srem, smembers). Histories are
// partitioned by key before it is used, so its state is one key's value.
func KVModel() porcupine.Model {
	return porcupine.Model{
		Init: func() interface{} { return kvState{} },
		Step: kvStep,
		Hash: func(state interface{}) uint64 {
			st := state.(kvState)
			h := fnv.New64a()
			h.Write([]byte{st.kind})
			h.Write([]byte(st.s))
			return h.Sum64()
		},
		DescribeOperation: describeKVOp,
		DescribeState:     describeKVState,
		DescribeOperationMetadata: func(info interface{}) string {
			switch info := info.(type) {
			case nil:
				return ""
			case *Op:
				// porcupineOps's operations carry their history entry;
				// it is described only for a visualization, so the
				// string is made only then.
				return opMetadata(info)
			}
			return fmt.Sprint(info)
		},
	}
}

// opMetadata describes a history entry in Porcupine's visualization.
func opMetadata(op *Op) string { return fmt.Sprintf("op #%d %s", op.ID, sessionOf(op)) }

// porcupineOps converts one key's operations: fail ops are dropped (except a
// cas that reported CONDFAILED), reads with an unknown outcome are dropped
// (they constrain nothing), and writes with an unknown outcome get an
// infinite return time so that Porcupine may linearize them anywhere after
// their invocation — including after every other operation, which is the
// same as never having happened.
//
// Unknown puts and cas whose value nothing observed (no get returned it, no
// cas expected it) are pruned on plain register keys, keeping only the k
// earliest-invoked where k is the number of CONDFAILED cas on the key (such
// a cas may need some unobserved value in place). This is exact: a
// linearization of the full history uses at most k of them, and the k
// earliest can stand in for those (the others go last, where they change
// nothing observed). It keeps Porcupine's search small when faults leave
// many writes unknown.
func porcupineOps(h *history, k *keyInfo) (out []porcupine.Operation, idx []int, pruned int) {
	clients := map[int]int{}
	prune := map[int]bool{}
	if k.register && !k.counter && !k.set {
		observed := map[string]bool{}
		condFailed := 0
		for _, i := range k.ops {
			op := &h.ops[i]
			switch {
			case isCondFailed(op):
				condFailed++
				observed[op.Args[0]] = true
			case op.F == FGet && op.Outcome == OK:
				if v, _ := getResult(op); v != nil {
					observed[*v] = true
				}
				for _, v := range op.Values {
					observed[v] = true
				}
			case op.F == FCAS:
				observed[op.Args[0]] = true
			}
		}
		var cand []int
		for _, i := range k.ops {
			op := &h.ops[i]
			if op.Outcome != Unknown || (op.F != FPut && op.F != FCAS) {
				continue
			}
			if v, _ := writeValue(op); !observed[v] {
				cand = append(cand, i)
			}
		}
		sort.SliceStable(cand, func(a, b int) bool { return h.ops[cand[a]].Invoke < h.ops[cand[b]].Invoke })
		for n, i := range cand {
			if n >= condFailed {
				prune[i] = true
			}
		}
	}
	if k.set && !k.register && !k.counter {
		// an unknown sadd of an element no smembers returned and no srem
		// touched can always go last: prune it
		seen := map[string]bool{}
		for _, i := range k.ops {
			op := &h.ops[i]
			switch {
			case op.F == FSMembers && op.Outcome == OK:
				for _, e := range op.Values {
					seen[e] = true
				}
			case op.F == FSRem:
				seen[op.Args[0]] = true
			}
		}
		for _, i := range k.ops {
			if op := &h.ops[i]; op.F == FSAdd && op.Outcome == Unknown && !seen[op.Args[0]] {
				prune[i] = true
			}
		}
	}
	// At most one operation each: sized once, not grown by append.
	out, idx = make([]porcupine.Operation, 0, len(k.ops)), make([]int, 0, len(k.ops))
	for _, i := range k.ops {
		op := &h.ops[i]
		if prune[i] {
			pruned++
			continue
		}
		in := kvInput{f: op.F, unknown: op.Outcome == Unknown}
		switch op.F {
		case FGet, FSMembers:
			if op.Outcome != OK {
				continue
			}
		case FPut, FDelete, FIncr, FSAdd, FSRem:
			if op.Outcome == Fail {
				continue
			}
		case FCAS:
			if op.Outcome == Fail {
				if !isCondFailed(op) {
					continue
				}
				in.condFailed = true
			}
		default:
			continue
		}
		if len(op.Args) > 0 {
			in.a0 = op.Args[0]
		}
		if len(op.Args) > 1 {
			in.a1 = op.Args[1]
		}
		if op.F == FIncr {
			in.delta, _ = strconv.ParseInt(op.Args[0], 10, 64)
		}
		var o kvOutput
		if op.F == FGet {
			v, siblings := getResult(op)
			if v != nil {
				o.present, o.val = true, *v
			}
			if siblings {
				o.present, o.members = true, dedupSorted(sortedCopy(op.Values))
			}
		} else if op.Value != nil {
			o.present, o.val = true, *op.Value
		}
		if op.F == FSMembers {
			// a set has each member once
			o.members = dedupSorted(sortedCopy(op.Values))
			o.set = setState(o.members)
		}
		if op.Int != nil {
			o.hasInt, o.n = true, *op.Int
		}
		c, ok := clients[op.Client]
		if !ok {
			c = len(clients)
			clients[op.Client] = c
		}
		ret := int64(math.MaxInt64)
		if op.Complete != nil && op.Outcome != Unknown {
			ret = *op.Complete
		}
		out = append(out, porcupine.Operation{ClientId: c, Input: in, Output: o, Call: op.Invoke, Return: ret, Metadata: op})
		idx = append(idx, i)
	}
	return out, idx, pruned
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	sort.Strings(c)
	return c
}

func dedupSorted(s []string) []string {
	if len(s) < 2 {
		return s
	}
	out := s[:1]
	for _, x := range s[1:] {
		if x != out[len(out)-1] {
			out = append(out, x)
		}
	}
	return out
}

// checkLinearizable checks each key's sub-history with Porcupine, in
// parallel, within opts.Timeout overall.
func checkLinearizable(h *history, opts Options) CheckResult {
	cr := CheckResult{Counts: map[string]int64{}}
	model := KVModel()
	deadline := time.Now().Add(opts.Timeout)
	type keyRes struct {
		res    porcupine.CheckResult
		ops    []porcupine.Operation
		idx    []int
		pruned int
		done   bool
	}
	results := make([]keyRes, len(h.keys))
	// Two rounds: first every key with a small budget, so that one hard key
	// cannot starve the others; then the undecided keys share what is left.
	round := func(keys []int, budget func() time.Duration) {
		var next int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := 0; w < runtime.GOMAXPROCS(0); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					mu.Lock()
					n := next
					next++
					mu.Unlock()
					if n >= len(keys) {
						return
					}
					i := keys[n]
					b := budget()
					if b <= 0 {
						continue // left undecided: the verdict becomes unknown
					}
					r := &results[i]
					if r.ops == nil && r.idx == nil {
						r.ops, r.idx, r.pruned = porcupineOps(h, h.kinfo[h.keys[i]])
					}
					r.res = porcupine.Ok
					if len(r.ops) > 0 {
						r.res = porcupine.CheckOperationsTimeout(model, r.ops, b)
					}
					r.done = true
				}
			}()
		}
		wg.Wait()
	}
	all := make([]int, len(h.keys))
	for i := range all {
		all[i] = i
	}
	first := opts.Timeout / 20
	if first < 100*time.Millisecond {
		first = 100 * time.Millisecond
	}
	round(all, func() time.Duration { return min(first, time.Until(deadline)) })
	var hard []int
	for i, r := range results {
		if !r.done || r.res == porcupine.Unknown {
			hard = append(hard, i)
		}
	}
	if len(hard) > 0 {
		round(hard, func() time.Duration { return time.Until(deadline) })
	}
	col := newCollector(opts.MaxExamples)
	var checked, unknown, checkedOps, pruned int64
	var unknownKeys []string
	for i, r := range results {
		key := h.keys[i]
		if !r.done || r.res == porcupine.Unknown {
			unknown++
			if len(unknownKeys) < 5 {
				unknownKeys = append(unknownKeys, strconv.Quote(key))
			}
			continue
		}
		checked++
		checkedOps += int64(len(r.ops))
		pruned += int64(r.pruned)
		if r.res != porcupine.Illegal {
			continue
		}
		remaining := time.Until(deadline)
		if remaining < time.Second {
			remaining = time.Second
		}
		vr, info := porcupine.CheckOperationsVerbose(model, r.ops, remaining)
		window, stuck, longest := failureWindow(r.ops, info)
		msg := fmt.Sprintf("no linearization of the %d operations on key %q is consistent with a single register/counter/set", len(r.idx), key)
		var idx []int
		if vr == porcupine.Illegal && stuck >= 0 {
			msg += fmt.Sprintf("; the longest partial linearization covers %d of them and cannot place op #%d (shown: the operations overlapping it and the last ones linearized before it)", longest, h.ops[r.idx[stuck]].ID)
			for _, w := range window {
				idx = append(idx, r.idx[w])
			}
		} else {
			const maxOps = 40
			idx = r.idx
			if len(idx) > maxOps {
				msg += fmt.Sprintf(" (first %d shown)", maxOps)
				idx = idx[:maxOps]
			}
		}
		col.add(Anomaly{Kind: "non-linearizable", Key: key, Message: msg, Ops: h.opsOf(idx...)})
		if vr == porcupine.Illegal && len(cr.Visualizations) < opts.Visualize {
			var buf bytes.Buffer
			if err := porcupine.Visualize(model, info, &buf); err == nil {
				cr.Visualizations = append(cr.Visualizations, Visualization{Key: key, HTML: buf.Bytes()})
			}
		}
	}
	col.fill(&cr)
	cr.Counts["keys"] = int64(len(h.keys))
	cr.Counts["keys_checked"] = checked
	cr.Counts["keys_unknown"] = unknown
	cr.Counts["ops_checked"] = checkedOps
	cr.Counts["unknown_writes_pruned"] = pruned
	cr.Notes = append(cr.Notes,
		"model per key: register (get/put/delete/cas), counter (incr, absent = 0) and set (sadd/srem/smembers); partitioned by key",
		"fail ops are dropped, except cas with CONDFAILED (a read that saw a different value); unknown writes may take effect at any time after their invocation, or never; unknown reads are dropped; unknown puts/cas whose value nothing observed are pruned on plain register keys, but for as many as there are CONDFAILED cas (exact: see porcupineOps)")
	switch {
	case col.total > 0:
		cr.Verdict = VerdictViolation
		cr.Summary = fmt.Sprintf("%d of %d keys are not linearizable", col.total, len(h.keys))
	case unknown > 0:
		cr.Verdict = VerdictUnknown
		cr.Summary = fmt.Sprintf("timed out after %s: %d of %d keys not decided (e.g. %s)", opts.Timeout, unknown, len(h.keys), strings.Join(unknownKeys, ", "))
	case len(h.keys) == 0:
		cr.Verdict = VerdictSkipped
		cr.Summary = "no operations"
	default:
		cr.Verdict = VerdictOK
		cr.Summary = fmt.Sprintf("all %d keys linearizable (%d operations)", checked, checkedOps)
	}
	return cr
}

// failureWindow picks, from Porcupine's longest partial linearization of a
// non-linearizable key, the first operation (by invocation) it could not
// place, and returns it with the operations overlapping it in time and the
// last two linearized before it (indices into ops, sorted, at most 20).
func failureWindow(ops []porcupine.Operation, info porcupine.LinearizationInfo) (window []int, stuck, longest int) {
	parts := info.PartialLinearizations()
	if len(parts) != 1 || len(parts[0]) == 0 {
		return nil, -1, 0
	}
	var best []int
	for _, p := range parts[0] {
		if len(p) > len(best) {
			best = p
		}
	}
	in := make([]bool, len(ops))
	for _, id := range best {
		in[id] = true
	}
	stuck = -1
	for i, op := range ops {
		if !in[i] && (stuck < 0 || op.Call < ops[stuck].Call) {
			stuck = i
		}
	}
	if stuck < 0 {
		return nil, -1, len(best)
	}
	sel := map[int]bool{stuck: true}
	for n := len(best) - 1; n >= 0 && n >= len(best)-2; n-- {
		sel[best[n]] = true
	}
	s := ops[stuck]
	for i, op := range ops {
		if len(sel) >= 20 {
			break
		}
		if op.Call <= s.Return && op.Return >= s.Call {
			sel[i] = true
		}
	}
	for i := range sel {
		window = append(window, i)
	}
	sort.Ints(window)
	return window, stuck, len(best)
}
