package checker

import (
	"fmt"
	"sort"
)

// frontier summarises a set of writes on one key so that "is write w
// certainly older than some write of the set?" is O(1): by version on a
// versioned key, else by real time (w completed before the latest
// invocation in the set).
type frontier struct {
	maxVer uint64
	verOp  int
	maxInv int64
	invOp  int
	any    int // some write of the set, -1 when empty
}

func newFrontier() frontier { return frontier{verOp: -1, invOp: -1, any: -1, maxInv: -1 << 62} }

func (f *frontier) add(h *history, w int) { f.addVersion(h, w, h.ops[w].Version) }

// addVersion adds write w known to have version ver (0: unknown).
func (f *frontier) addVersion(h *history, w int, ver uint64) {
	op := &h.ops[w]
	if f.any < 0 {
		f.any = w
	}
	if ver > f.maxVer {
		f.maxVer, f.verOp = ver, w
	}
	if op.Invoke > f.maxInv {
		f.maxInv, f.invOp = op.Invoke, w
	}
}

// newer returns a write of the set that is certainly ordered after what ro
// observed (with version ver, 0 if unknown), or -1. Reads of values no
// write wrote are never judged here.
func (f *frontier) newer(h *history, k *keyInfo, ro readOf, ver uint64) int {
	if f.any < 0 {
		return -1
	}
	if ro.initial {
		if k.versioned && f.verOp >= 0 {
			return f.verOp
		}
		if f.invOp >= 0 {
			return f.invOp
		}
		return f.any
	}
	if ro.write < 0 {
		return -1
	}
	w := &h.ops[ro.write]
	if k.versioned {
		if ver != 0 && f.maxVer > ver {
			return f.verOp
		}
		return -1
	}
	if !h.noRealTime && w.Complete != nil && *w.Complete < f.maxInv {
		return f.invOp
	}
	return -1
}

// prefixEntry is the frontier of a session's writes (or observed writes) on
// one key over its operations before session position pos+1.
type prefixEntry struct {
	pos int
	f   frontier
}

// prefixAt returns the frontier over entries with position < pos.
func prefixAt(list []prefixEntry, pos int) (frontier, bool) {
	i := sort.Search(len(list), func(i int) bool { return list[i].pos >= pos })
	if i == 0 {
		return frontier{}, false
	}
	return list[i-1].f, true
}

// dep records that a reading session observed a write of another session.
type dep struct {
	pos   int // the write's position in its session
	read  int // the read that observed it
	write int
}

// checkSession checks read-your-writes, monotonic reads, monotonic writes
// and writes-follow-reads per session, on keys whose written values are
// unique (see docs/checker.md for the exact definitions).
func checkSession(h *history, opts Options) CheckResult {
	cr := CheckResult{Counts: map[string]int64{}}
	col := newCollector(opts.MaxExamples)
	S := int64(len(h.sessions))
	pos := make([]int, len(h.ops))    // op index -> position in its session
	sessOf := make([]int, len(h.ops)) // op index -> session number
	keyID := make(map[string]int64, len(h.keys))
	for i, k := range h.keys {
		keyID[k] = int64(i)
	}
	// per (key, session) = keyID*S + session: cumulative frontiers of the
	// session's own acknowledged writes and of the writes it observed
	ownW := map[int64][]prefixEntry{}
	obsR := map[int64][]prefixEntry{}
	var keysChecked, keysSkipped, versionedKeys, untrusted int64
	for _, key := range h.keys {
		k := h.kinfo[key]
		if k.uniqueRegister() {
			keysChecked++
			if k.versioned {
				versionedKeys++
			}
			if k.versionsUntrusted {
				untrusted++
			}
		} else {
			keysSkipped++
		}
	}
	// Pass 1: session positions and the cumulative frontiers of each session.
	for si, s := range h.sessions {
		for p, i := range h.bySession[s] {
			pos[i], sessOf[i] = p, si
			op := &h.ops[i]
			k := h.kinfo[op.Key]
			if !k.uniqueRegister() {
				continue
			}
			if ro, ok := h.observed(k, i); ok && !ro.initial && ro.write >= 0 {
				f := newFrontier()
				ks := keyID[op.Key]*S + int64(si)
				l := obsR[ks]
				if len(l) > 0 {
					f = l[len(l)-1].f
				}
				f.addVersion(h, ro.write, h.versionOf(ro, i))
				obsR[ks] = append(l, prefixEntry{p, f})
			}
			if op.Outcome == OK && mayHaveWritten(op) {
				f := newFrontier()
				ks := keyID[op.Key]*S + int64(si)
				l := ownW[ks]
				if len(l) > 0 {
					f = l[len(l)-1].f
				}
				f.add(h, i)
				ownW[ks] = append(l, prefixEntry{p, f})
			}
		}
	}
	// Pass 2: check each session's reads and writes.
	var reads int64
	for _, s := range h.sessions {
		ryw := map[string]*frontier{}
		mr := map[string]*frontier{}
		// deps[t]: the latest write of session t this session observed
		// (pos -1: none); depList: the sessions with one, in order
		deps := make([]dep, S)
		for t := range deps {
			deps[t].pos = -1
		}
		var depList []int
		get := func(m map[string]*frontier, key string) *frontier {
			f := m[key]
			if f == nil {
				nf := newFrontier()
				f = &nf
				m[key] = f
			}
			return f
		}
		for _, i := range h.bySession[s] {
			op := &h.ops[i]
			k := h.kinfo[op.Key]
			if !k.uniqueRegister() {
				continue
			}
			if ro, ok := h.observed(k, i); ok && (ro.initial || ro.write >= 0) {
				reads++
				ver := h.versionOf(ro, i)
				what := func() string {
					if ro.initial {
						return "the initial (absent) value"
					}
					return fmt.Sprintf("%q from op #%d", *valueRead(op), h.ops[ro.write].ID)
				}
				if w := get(ryw, op.Key).newer(h, k, ro, ver); w >= 0 {
					col.add(Anomaly{at: i + 1, Kind: "read-your-writes", Key: op.Key, Ops: h.opsOf(w, ro.write, i),
						Message: fmt.Sprintf("session %s read %s after its own write op #%d, which is ordered after it", s, what(), h.ops[w].ID)})
				}
				if w := get(mr, op.Key).newer(h, k, ro, ver); w >= 0 {
					col.add(Anomaly{at: i + 1, Kind: "monotonic-reads", Key: op.Key, Ops: h.opsOf(w, ro.write, i),
						Message: fmt.Sprintf("session %s read %s after it had read op #%d's write, which is ordered after it", s, what(), h.ops[w].ID)})
				}
				kbase := keyID[op.Key] * S
				for _, wsn := range depList {
					d, ws := deps[wsn], h.sessions[wsn]
					if f, ok := prefixAt(ownW[kbase+int64(wsn)], d.pos); ok {
						if w := f.newer(h, k, ro, ver); w >= 0 {
							col.add(Anomaly{at: i + 1, Kind: "monotonic-writes", Key: op.Key, Ops: h.opsOf(w, d.write, d.read, ro.write, i),
								Message: fmt.Sprintf("session %s saw op #%d of session %s, then read %s although %s had written op #%d (ordered after it) before op #%d", s, h.ops[d.write].ID, ws, what(), ws, h.ops[w].ID, h.ops[d.write].ID)})
						}
					}
					if f, ok := prefixAt(obsR[kbase+int64(wsn)], d.pos); ok {
						if w := f.newer(h, k, ro, ver); w >= 0 {
							col.add(Anomaly{at: i + 1, Kind: "writes-follow-reads", Key: op.Key, Ops: h.opsOf(w, d.write, d.read, ro.write, i),
								Message: fmt.Sprintf("session %s saw op #%d of session %s, which %s wrote after reading op #%d's write, then read %s, which is ordered before that", s, h.ops[d.write].ID, ws, ws, h.ops[w].ID, what())})
						}
					}
				}
				if !ro.initial {
					get(mr, op.Key).addVersion(h, ro.write, ver)
					if wsn := sessOf[ro.write]; h.sessions[wsn] != s {
						if deps[wsn].pos < 0 {
							j := sort.SearchInts(depList, wsn)
							depList = append(depList, 0)
							copy(depList[j+1:], depList[j:])
							depList[j] = wsn
						}
						if p := pos[ro.write]; p >= deps[wsn].pos {
							deps[wsn] = dep{pos: p, read: i, write: ro.write}
						}
					}
				}
			}
			if op.Outcome == OK && mayHaveWritten(op) {
				if k.versioned && op.Version != 0 {
					if f := get(ryw, op.Key); f.maxVer > op.Version {
						col.add(Anomaly{at: i + 1, Kind: "monotonic-writes", Key: op.Key, Ops: h.opsOf(f.verOp, i),
							Message: fmt.Sprintf("session %s wrote op #%d after op #%d, but it got the lower version", s, op.ID, h.ops[f.verOp].ID)})
					}
					if f := get(mr, op.Key); f.maxVer > op.Version {
						col.add(Anomaly{at: i + 1, Kind: "writes-follow-reads", Key: op.Key, Ops: h.opsOf(f.verOp, i),
							Message: fmt.Sprintf("session %s wrote op #%d after reading op #%d's write, but it got the lower version", s, op.ID, h.ops[f.verOp].ID)})
					}
				}
				get(ryw, op.Key).add(h, i)
			}
		}
	}
	col.fill(&cr)
	cr.Counts["sessions"] = int64(len(h.sessions))
	cr.Counts["keys_checked"] = keysChecked
	cr.Counts["keys_versioned"] = versionedKeys
	cr.Counts["keys_versions_untrusted"] = untrusted
	cr.Counts["keys_skipped"] = keysSkipped
	cr.Counts["reads_checked"] = reads
	cr.Notes = append(cr.Notes,
		"applies to register keys (get/put/delete/cas) whose put/cas values are unique; counter, set and duplicate-value keys are skipped",
		"write order per key: by version when every acknowledged write on the key carries a distinct one that its reads agree with, else real time (w1 before w2 only if w1 completed before w2 was invoked); writes concurrent in that order never cause a violation",
	)
	if h.noRealTime {
		cr.Notes = append(cr.Notes, "real-time order disabled (--no-realtime-order): without trusted versions only the initial value is known to precede a write")
	}
	cr.Notes = append(cr.Notes,
		"a session is Op.Session, or client-N when empty; its order is invocation order")
	cr.Verdict = col.verdict()
	switch {
	case col.total > 0:
		cr.Summary = fmt.Sprintf("%d session-guarantee violations in %d reads of %d sessions", col.total, reads, len(h.sessions))
	case keysChecked == 0:
		cr.Verdict = VerdictSkipped
		cr.Summary = "no register keys with unique written values"
	default:
		cr.Summary = fmt.Sprintf("read-your-writes, monotonic reads, monotonic writes and writes-follow-reads hold: %d reads of %d keys in %d sessions", reads, keysChecked, len(h.sessions))
	}
	return cr
}

// valueRead is the value a successful register read observed.
func valueRead(op *Op) *string {
	if op.F == FCAS {
		return &op.Args[0]
	}
	v, _ := getResult(op)
	if v == nil {
		return StrPtr("")
	}
	return v
}
