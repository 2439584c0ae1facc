package checker

import (
	"fmt"
	"sort"
	"strings"
)

// causalGraph is the history as Bouajjani et al. see it: per-session
// program order (po) and the read-from relation (wr) over the operations of
// unique-value register keys. Causal order co = (po ∪ wr)+ is represented
// by a vector clock per node: the highest position of each session in its
// causal past (po makes every causal past downward closed per session).
type causalGraph struct {
	h        *history
	nodes    []int // op indices
	sess     []int // node -> session number
	pos      []int // node -> position among its session's nodes
	poPred   []int // node -> previous node of its session, -1
	wrSrc    []int // node -> node whose write it read, -1
	initRead []bool
	isWrite  []bool
	key      []string
	sessions []string
	bySess   [][]int // session -> nodes in po
	// writes[key][session] = the session's write nodes on key, in po
	writes map[string]map[int][]int
}

func buildCausalGraph(h *history) *causalGraph {
	g := &causalGraph{h: h, writes: map[string]map[int][]int{}}
	nodeOf := map[int]int{}
	read := map[int]bool{} // op indices of writes someone read
	for _, key := range h.keys {
		k := h.kinfo[key]
		if !k.uniqueRegister() {
			continue
		}
		for _, i := range k.ops {
			if ro, ok := h.observed(k, i); ok && ro.write >= 0 {
				read[ro.write] = true
			}
		}
	}
	for si, s := range h.sessions {
		g.sessions = append(g.sessions, s)
		var list []int
		for _, i := range h.bySession[s] {
			op := &h.ops[i]
			k := h.kinfo[op.Key]
			if !k.uniqueRegister() || op.Outcome == Fail {
				continue
			}
			_, isRead := h.observed(k, i)
			isW := mayHaveWritten(op) && (op.Outcome == OK || read[i])
			if !isRead && !isW {
				continue
			}
			n := len(g.nodes)
			nodeOf[i] = n
			g.nodes = append(g.nodes, i)
			g.sess = append(g.sess, si)
			g.pos = append(g.pos, len(list))
			if len(list) > 0 {
				g.poPred = append(g.poPred, list[len(list)-1])
			} else {
				g.poPred = append(g.poPred, -1)
			}
			g.isWrite = append(g.isWrite, isW)
			g.key = append(g.key, op.Key)
			g.wrSrc = append(g.wrSrc, -1)
			g.initRead = append(g.initRead, false)
			list = append(list, n)
			if isW {
				m := g.writes[op.Key]
				if m == nil {
					m = map[int][]int{}
					g.writes[op.Key] = m
				}
				m[si] = append(m[si], n)
			}
		}
		g.bySess = append(g.bySess, list)
	}
	for n, i := range g.nodes {
		k := h.kinfo[h.ops[i].Key]
		ro, ok := h.observed(k, i)
		if !ok {
			continue
		}
		switch {
		case ro.initial:
			g.initRead[n] = true
		case ro.write >= 0:
			g.wrSrc[n] = nodeOf[ro.write]
		}
	}
	return g
}

// topo returns the nodes in a topological order of po ∪ wr ∪ extra and
// the nodes left over (non-empty exactly when there is a cycle).
func (g *causalGraph) topo(in []bool, extra map[int][]int) (order []int, left []int) {
	n := len(g.nodes)
	indeg := make([]int, n)
	succ := make([][]int, n)
	addEdge := func(a, b int) {
		if a < 0 || (in != nil && (!in[a] || !in[b])) {
			return
		}
		indeg[b]++
		succ[a] = append(succ[a], b)
	}
	for b := 0; b < n; b++ {
		if in != nil && !in[b] {
			continue
		}
		addEdge(g.poPred[b], b)
		addEdge(g.wrSrc[b], b)
		for _, a := range extra[b] {
			addEdge(a, b)
		}
	}
	queue := make([]int, 0, n)
	for b := 0; b < n; b++ {
		if (in == nil || in[b]) && indeg[b] == 0 {
			queue = append(queue, b)
		}
	}
	for len(queue) > 0 {
		a := queue[0]
		queue = queue[1:]
		order = append(order, a)
		for _, b := range succ[a] {
			indeg[b]--
			if indeg[b] == 0 {
				queue = append(queue, b)
			}
		}
	}
	for b := 0; b < n; b++ {
		if (in == nil || in[b]) && indeg[b] > 0 {
			left = append(left, b)
		}
	}
	return order, left
}

// cycle walks predecessors among the left-over nodes of a failed
// topological sort until one repeats, and returns that cycle in order.
func (g *causalGraph) cycle(left []int, extra map[int][]int) []int {
	inLeft := map[int]bool{}
	for _, n := range left {
		inLeft[n] = true
	}
	seen := map[int]int{}
	var path []int
	cur := left[0]
	for {
		if at, ok := seen[cur]; ok {
			c := append([]int(nil), path[at:]...)
			// reverse: we walked predecessors
			for i, j := 0, len(c)-1; i < j; i, j = i+1, j-1 {
				c[i], c[j] = c[j], c[i]
			}
			return c
		}
		seen[cur] = len(path)
		path = append(path, cur)
		next := -1
		for _, p := range append([]int{g.poPred[cur], g.wrSrc[cur]}, extra[cur]...) {
			if p >= 0 && inLeft[p] {
				next = p
				break
			}
		}
		if next < 0 {
			return path
		}
		cur = next
	}
}

func (g *causalGraph) ops(nodes ...int) []Op {
	idx := make([]int, 0, len(nodes))
	for _, n := range nodes {
		if n >= 0 {
			idx = append(idx, g.nodes[n])
		}
	}
	return g.h.opsOf(idx...)
}

func (g *causalGraph) name(n int) string { return fmt.Sprintf("#%d", g.h.ops[g.nodes[n]].ID) }

// maxVCEntries bounds the vector-clock memory of the causal check.
const maxVCEntries = 1 << 25

// checkCausal checks causal consistency (CC) with the bad patterns of
// Bouajjani, Enea, Guerraoui and Hamza, "On verifying causal consistency"
// (POPL 2017): CyclicCO, WriteCOInitRead, ThinAirRead and WriteCORead.
// With memory set it also checks causal memory (CM): WriteHBInitRead and
// CyclicHB.
func checkCausal(h *history, opts Options, model string) CheckResult {
	memory := model == CheckCausalMemory
	convergence := model == CheckCausalConvergence
	cr := CheckResult{Counts: map[string]int64{}}
	col := newCollector(opts.MaxExamples)
	g := buildCausalGraph(h)
	S := len(g.sessions)
	cr.Counts["nodes"] = int64(len(g.nodes))
	cr.Counts["sessions"] = int64(S)
	cr.Notes = append(cr.Notes,
		"applies to register keys whose put/cas values are unique; a cas that succeeded reads its expected value and writes its new one",
		"unknown-outcome writes count only if some read returned their value; absent reads are the initial value only on keys never deleted",
		"CC = no CyclicCO, WriteCOInitRead, ThinAirRead, WriteCORead (POPL 2017, Table 3); CM adds WriteHBInitRead and CyclicHB; CCv (causal+) adds CyclicCF, reported only when the CC patterns are absent")
	if len(g.nodes) == 0 {
		cr.Verdict, cr.Summary = VerdictSkipped, "no register keys with unique written values"
		return cr
	}
	if int64(len(g.nodes))*int64(S) > maxVCEntries {
		cr.Verdict = VerdictUnknown
		cr.Summary = fmt.Sprintf("history too large for the vector clocks (%d nodes × %d sessions)", len(g.nodes), S)
		return cr
	}
	if memory && len(g.nodes) > opts.CausalMemoryLimit {
		cr.Verdict = VerdictUnknown
		cr.Summary = fmt.Sprintf("history has %d operations, more than the causal-memory limit %d", len(g.nodes), opts.CausalMemoryLimit)
		return cr
	}
	order, left := g.topo(nil, nil)
	if len(left) > 0 {
		c := g.cycle(left, nil)
		names := make([]string, len(c))
		for i, n := range c {
			names[i] = g.name(n)
		}
		col.add(Anomaly{Kind: "CyclicCO", Key: g.key[c[0]], Ops: g.ops(c...),
			Message: fmt.Sprintf("session order and read-from form a cycle: %s → %s", strings.Join(names, " → "), names[0])})
	}
	// Vector clocks in topological order; kept for writes and session ends.
	vcs := make([][]int32, len(g.nodes))
	keep := make([]bool, len(g.nodes))
	for n := range g.nodes {
		keep[n] = g.isWrite[n]
	}
	for _, l := range g.bySess {
		if len(l) > 0 {
			keep[l[len(l)-1]] = true
		}
	}
	last := make([][]int32, S) // running clock of each session
	newVC := func() []int32 {
		v := make([]int32, S)
		for i := range v {
			v[i] = -1
		}
		return v
	}
	var reads int64
	cf := map[int][]int{} // node -> conflict-order predecessors (CCv)
	for _, n := range order {
		vc := newVC()
		if p := g.poPred[n]; p >= 0 {
			copy(vc, last[g.sess[n]])
		}
		if w := g.wrSrc[n]; w >= 0 {
			for i, x := range vcs[w] {
				if x > vc[i] {
					vc[i] = x
				}
			}
		}
		vc[g.sess[n]] = int32(g.pos[n])
		last[g.sess[n]] = vc
		if keep[n] {
			vcs[n] = vc
		}
		key := g.key[n]
		// past reports whether write node w is strictly causally before n.
		past := func(w int) bool { return w != n && int32(g.pos[w]) <= vc[g.sess[w]] }
		switch {
		case g.initRead[n]:
			reads++
			for _, t := range sortedSessions(g.writes[key]) {
				ws := g.writes[key][t]
				if len(ws) > 0 && past(ws[0]) {
					col.add(Anomaly{Kind: "WriteCOInitRead", Key: key, Ops: g.ops(ws[0], n),
						Message: fmt.Sprintf("%s read the initial (absent) value although write %s of session %s is in its causal past", g.name(n), g.name(ws[0]), g.sessions[t])})
					break
				}
			}
		case g.wrSrc[n] >= 0:
			reads++
			w1 := g.wrSrc[n]
			reported := false
			for _, t := range sortedSessions(g.writes[key]) {
				ws := g.writes[key][t]
				// the latest write of session t on key strictly in n's past
				j := sort.Search(len(ws), func(j int) bool { return !past(ws[j]) }) - 1
				if j < 0 || ws[j] == w1 {
					continue
				}
				w2 := ws[j]
				if convergence {
					// w2 is in the causal past of a read of w1: every
					// replica must order w2 before w1 (conflict order cf)
					cf[w1] = append(cf[w1], w2)
				}
				if !reported && vcs[w2] != nil && int32(g.pos[w1]) <= vcs[w2][g.sess[w1]] {
					col.add(Anomaly{Kind: "WriteCORead", Key: key, Ops: g.ops(w1, w2, n),
						Message: fmt.Sprintf("%s read the value of %s although %s overwrote it in %s's causal past (%s co %s co %s)", g.name(n), g.name(w1), g.name(w2), g.name(n), g.name(w1), g.name(w2), g.name(n))})
					reported = true
				}
			}
		}
	}
	// ThinAirRead: reads of values no operation wrote.
	for _, key := range h.keys {
		k := h.kinfo[key]
		if !k.uniqueRegister() {
			continue
		}
		for _, i := range k.ops {
			if ro, ok := h.observed(k, i); ok && !ro.initial && ro.write < 0 {
				col.add(Anomaly{Kind: "ThinAirRead", Key: key, Ops: h.opsOf(i),
					Message: fmt.Sprintf("op #%d read %q, which no put or cas wrote", h.ops[i].ID, *valueRead(&h.ops[i]))})
			}
		}
	}
	ccViolations := col.total
	if memory && len(left) == 0 {
		g.checkMemory(vcs, col)
	}
	if convergence && ccViolations == 0 {
		if _, cleft := g.topo(nil, cf); len(cleft) > 0 {
			c := g.cycle(cleft, cf)
			names := make([]string, len(c))
			for i, m := range c {
				names[i] = g.name(m)
			}
			col.add(Anomaly{Kind: "CyclicCF", Key: g.key[c[0]], Ops: g.ops(c...),
				Message: fmt.Sprintf("no order of the writes agrees with causality and with what every read saw (conflict order ∪ causal order is cyclic): %s → %s", strings.Join(names, " → "), names[0])})
		}
	}
	col.fill(&cr)
	cr.Counts["reads_checked"] = reads
	name := "causal consistency (CC)"
	switch {
	case memory:
		name = "causal memory (CM)"
	case convergence:
		name = "causal convergence (CCv)"
	}
	cr.Verdict = col.verdict()
	if col.total > 0 {
		cr.Summary = fmt.Sprintf("%d bad patterns of %s found (%d of them CC patterns)", col.total, name, ccViolations)
	} else {
		cr.Summary = fmt.Sprintf("%s holds: no bad pattern among %d operations of %d sessions", name, len(g.nodes), S)
	}
	return cr
}

func sortedSessions(m map[int][]int) []int {
	out := make([]int, 0, len(m))
	for t := range m {
		out = append(out, t)
	}
	sort.Ints(out)
	return out
}

// bitset is a fixed-size set of node numbers.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)      { b[i/64] |= 1 << (uint(i) % 64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(uint(i)%64)) != 0 }
func (b bitset) or(o bitset) (ch bool) {
	for i := range b {
		x := b[i] | o[i]
		if x != b[i] {
			b[i], ch = x, true
		}
	}
	return ch
}

// checkMemory checks the causal-memory patterns for o = the last operation
// of each session: hb_o only grows along program order, so a cycle or a
// WriteHBInitRead for any o of a session shows up for its last one.
//
// hb_o is the smallest transitive relation containing co restricted to the
// causal past of o, and w1 hb_o w2 whenever w1, w2 write the same key and
// some read r2 that is o or po-before o reads w2 while w1 hb_o r2.
func (g *causalGraph) checkMemory(vcs [][]int32, col *collector) {
	n := len(g.nodes)
	for s, list := range g.bySess {
		if len(list) == 0 {
			continue
		}
		lvc := vcs[list[len(list)-1]]
		in := make([]bool, n)
		for m := 0; m < n; m++ {
			in[m] = int32(g.pos[m]) <= lvc[g.sess[m]]
		}
		extra := map[int][]int{}
		haveEdge := map[[2]int]bool{}
		var base []bitset // co ancestors: patterns already reported by CC are not repeated
		for round := 0; ; round++ {
			order, left := g.topo(in, extra)
			if len(left) > 0 {
				c := g.cycle(left, extra)
				names := make([]string, len(c))
				for i, m := range c {
					names[i] = g.name(m)
				}
				col.add(Anomaly{Kind: "CyclicHB", Key: g.key[c[0]], Ops: g.ops(append(c, list[len(list)-1])...),
					Message: fmt.Sprintf("in the view of session %s, happens-before is cyclic: %s → %s", g.sessions[s], strings.Join(names, " → "), names[0])})
				break
			}
			anc := make([]bitset, n)
			for _, m := range order {
				a := newBitset(n)
				for _, p := range append([]int{g.poPred[m], g.wrSrc[m]}, extra[m]...) {
					if p >= 0 && in[p] {
						a.or(anc[p])
						a.set(p)
					}
				}
				anc[m] = a
			}
			if round == 0 {
				base = anc
			}
			if round > n {
				break
			}
			added := false
			reported := false
			for _, r := range list {
				key := g.key[r]
				if g.initRead[r] && !reported {
					for _, t := range sortedSessions(g.writes[key]) {
						for _, w := range g.writes[key][t] {
							if in[w] && anc[r].has(w) && !base[r].has(w) {
								col.add(Anomaly{Kind: "WriteHBInitRead", Key: key, Ops: g.ops(w, r),
									Message: fmt.Sprintf("in the view of session %s, write %s happens before %s, which read the initial (absent) value", g.sessions[s], g.name(w), g.name(r))})
								reported = true
								break
							}
						}
						if reported {
							break
						}
					}
				}
				w2 := g.wrSrc[r]
				if w2 < 0 {
					continue
				}
				for _, t := range sortedSessions(g.writes[key]) {
					for _, w1 := range g.writes[key][t] {
						if w1 != w2 && in[w1] && anc[r].has(w1) && !haveEdge[[2]int{w1, w2}] {
							haveEdge[[2]int{w1, w2}] = true
							extra[w2] = append(extra[w2], w1)
							added = true
						}
					}
				}
			}
			if !added || reported {
				break
			}
		}
	}
}
