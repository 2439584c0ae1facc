package checker

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"testing"
)

// refSession evaluates the four session guarantees by their definitions
// (docs/checker.md), pair by pair, and returns the set of "index/kind" of
// the reads that violate them (reads only: the version-only checks on
// writes are left to the unit tests).
func refSession(ops []Op, versioned bool, noRealTime bool) map[string]bool {
	bad := map[string]bool{}
	byVal := map[string]int{} // key/value -> write index
	for i := range ops {
		if (ops[i].F == FPut) && ops[i].Outcome != Fail {
			byVal[ops[i].Key+"/"+ops[i].Args[0]] = i
		}
	}
	const initial = -1
	// src returns what read i observed: a write index, initial, or -2 (thin air)
	src := func(i int) int {
		if ops[i].Value == nil {
			return initial
		}
		if w, ok := byVal[ops[i].Key+"/"+*ops[i].Value]; ok {
			return w
		}
		return -2
	}
	// older: is write x (or initial) certainly ordered before write y?
	older := func(x, y int) bool {
		if x == initial {
			return true
		}
		if versioned {
			return ops[x].Version != 0 && ops[y].Version != 0 && ops[x].Version < ops[y].Version
		}
		return !noRealTime && ops[x].Complete != nil && *ops[x].Complete < ops[y].Invoke
	}
	sess := map[string][]int{}
	for i := range ops {
		s := sessionOf(&ops[i])
		sess[s] = append(sess[s], i)
	}
	// A session ends at an operation with an unknown outcome: what follows
	// is a new session (the client gave up on it, so it is not ordered
	// before the client's later operations).
	label := map[int]string{}
	split := map[string][]int{}
	for s, l := range sess {
		sort.SliceStable(l, func(a, b int) bool { return ops[l[a]].Invoke < ops[l[b]].Invoke })
		unknown := 0
		for _, i := range l {
			label[i] = fmt.Sprint(s, "/", unknown)
			split[label[i]] = append(split[label[i]], i)
			if ops[i].Outcome == Unknown {
				unknown++
			}
		}
	}
	sess = split
	pos := map[int]int{}
	for _, l := range sess {
		for p, i := range l {
			pos[i] = p
		}
	}
	isRead := func(i int) bool { return ops[i].F == FGet && ops[i].Outcome == OK && src(i) != -2 }
	for s, l := range sess {
		for p, r := range l {
			if !isRead(r) {
				continue
			}
			wr, key := src(r), ops[r].Key
			for _, e := range l[:p] {
				if ops[e].Key != key {
					continue
				}
				if ops[e].F == FPut && ops[e].Outcome == OK && older(wr, e) {
					bad[fmt.Sprint(r, "/read-your-writes")] = true
				}
				if isRead(e) && src(e) != initial && older(wr, src(e)) {
					bad[fmt.Sprint(r, "/monotonic-reads")] = true
				}
			}
			// dependencies: writes of other sessions observed earlier
			for _, r0 := range l[:p] {
				if !isRead(r0) || src(r0) == initial {
					continue
				}
				w2 := src(r0)
				t := label[w2]
				if t == s {
					continue
				}
				for _, e := range sess[t] {
					if pos[e] >= pos[w2] || ops[e].Key != key {
						continue
					}
					if ops[e].F == FPut && ops[e].Outcome == OK && older(wr, e) {
						bad[fmt.Sprint(r, "/monotonic-writes")] = true
					}
					if isRead(e) && src(e) != initial && older(wr, src(e)) {
						bad[fmt.Sprint(r, "/writes-follow-reads")] = true
					}
				}
			}
		}
	}
	return bad
}

// randomSessionHistory: 2-4 sessions of 2-6 operations over 2 keys with
// overlapping intervals; puts of unique values (some unknown), gets of the
// initial value or any value written on the key. Versions, when on, are a
// random order of each key's writes, and reads report the version of what
// they read.
func randomSessionHistory(rng *rand.Rand, versions bool) []Op {
	var ops []Op
	sessions := 2 + rng.IntN(3)
	for s := 0; s < sessions; s++ {
		t := int64(rng.IntN(20))
		for j := 1 + rng.IntN(6); j > 0; j-- {
			op := Op{Client: s, Key: "k" + strconv.Itoa(rng.IntN(2)), Invoke: t, Outcome: OK}
			d := int64(1 + rng.IntN(30))
			op.Complete = Int64Ptr(t + d)
			t += d + int64(rng.IntN(10))
			if rng.IntN(2) == 0 {
				op.F, op.Args = FPut, []string{fmt.Sprintf("v%d.%d", s, j)}
				if rng.IntN(8) == 0 {
					op.Outcome, op.Complete = Unknown, nil
				}
			} else {
				op.F = FGet
			}
			ops = append(ops, op)
		}
	}
	sort.SliceStable(ops, func(a, b int) bool { return ops[a].Invoke < ops[b].Invoke })
	perKey := map[string][]int{}
	for i := range ops {
		ops[i].ID = int64(i)
		if ops[i].F == FPut {
			perKey[ops[i].Key] = append(perKey[ops[i].Key], i)
		}
	}
	if versions {
		for _, ws := range perKey {
			for n, p := range rng.Perm(len(ws)) {
				if ops[ws[n]].Outcome == OK {
					ops[ws[n]].Version = uint64(p + 1)
				}
			}
		}
	}
	for i := range ops {
		if ops[i].F != FGet {
			continue
		}
		ws := perKey[ops[i].Key]
		if c := rng.IntN(len(ws) + 1); c < len(ws) {
			ops[i].Value = StrPtr(ops[ws[c]].Args[0])
			ops[i].Version = ops[ws[c]].Version
		}
	}
	return ops
}

// TestSessionMatchesReference compares the session check (frontiers and
// prefix searches) with the definitions evaluated pair by pair on
// thousands of small random histories, with and without versions and with
// real-time order on and off.
func TestSessionMatchesReference(t *testing.T) {
	n := 4000
	if testing.Short() {
		n = 800
	}
	seen := map[string]int{}
	for seed := uint64(0); seed < uint64(n); seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		versions := seed%2 == 1
		noRT := seed%3 == 2
		ops := randomSessionHistory(rng, versions)
		h := newHistory(ops)
		h.noRealTime = noRT
		opts := DefaultOptions()
		opts.MaxExamples = 1 << 30
		c := checkSession(h, opts)
		got := map[string]bool{}
		for _, a := range c.Anomalies {
			if a.at > 0 && h.ops[a.at-1].F == FGet {
				got[fmt.Sprint(a.at-1, "/", a.Kind)] = true
			}
		}
		versioned := versions
		for _, k := range h.kinfo {
			if k.okWrites > 0 && !k.versioned {
				versioned = false
			}
		}
		if versions != versioned {
			continue // a key without an acknowledged write: versions not used there
		}
		want := refSession(ops, versioned, noRT)
		if fmt.Sprint(sortedKeys(got)) != fmt.Sprint(sortedKeys(want)) {
			t.Fatalf("seed %d (versions %v, no real time %v): got %v, want %v\n%s", seed, versions, noRT, sortedKeys(got), sortedKeys(want), historyString(ops))
		}
		for k := range want {
			seen[k[indexSlash(k):]]++
		}
	}
	for _, k := range []string{"/read-your-writes", "/monotonic-reads", "/monotonic-writes", "/writes-follow-reads"} {
		if seen[k] == 0 {
			t.Errorf("no random history had %s", k)
		}
	}
	t.Logf("violations by kind: %v", seen)
}

func indexSlash(s string) int {
	for i := range s {
		if s[i] == '/' {
			return i
		}
	}
	return 0
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestStalenessMatchesReference compares the staleness measurement (sweep
// and Fenwick tree) with a pair-by-pair count on random histories.
func TestStalenessMatchesReference(t *testing.T) {
	var stale int64
	defer func() {
		if stale == 0 {
			t.Errorf("no random history had a stale read")
		}
	}()
	for seed := uint64(0); seed < 1500; seed++ {
		rng := rand.New(rand.NewPCG(seed, 13))
		versions := seed%2 == 1
		ops := randomSessionHistory(rng, versions)
		h := newHistory(ops)
		versioned := versions
		for _, k := range h.kinfo {
			if k.okWrites > 0 && !k.versioned {
				versioned = false
			}
		}
		if versions != versioned {
			continue
		}
		var wantV, wantT []int64
		for r := range ops {
			if ops[r].F != FGet || ops[r].Outcome != OK {
				continue
			}
			versioned := h.kinfo[ops[r].Key].versioned
			src := -1
			if ops[r].Value != nil {
				for w := range ops {
					if ops[w].F == FPut && ops[w].Key == ops[r].Key && ops[w].Args[0] == *ops[r].Value {
						src = w
					}
				}
			}
			if src >= 0 && versioned && ops[src].Version == 0 {
				continue // read of a write without a version: not measured
			}
			var n, first int64 = 0, -1
			for w := range ops {
				if ops[w].F != FPut || ops[w].Outcome != OK || ops[w].Key != ops[r].Key || *ops[w].Complete >= ops[r].Invoke {
					continue
				}
				newer := src < 0
				if src >= 0 {
					if versioned {
						newer = ops[w].Version > ops[src].Version
					} else {
						newer = ops[src].Complete != nil && ops[w].Invoke > *ops[src].Complete
					}
				}
				if newer {
					n++
					if first < 0 || *ops[w].Complete < first {
						first = *ops[w].Complete
					}
				}
			}
			lag := int64(0)
			if n > 0 {
				lag = ops[r].Invoke - first
			}
			wantV, wantT = append(wantV, n), append(wantT, lag)
		}
		c := checkStaleness(h, DefaultOptions())
		st := c.Staleness
		stale += st.StaleReads
		if st.Versions != distOf(wantV) || st.TimeNs != distOf(wantT) {
			t.Fatalf("seed %d (versions %v): got %+v %+v, want %+v %+v\n%s", seed, versions, st.Versions, st.TimeNs, distOf(wantV), distOf(wantT), historyString(ops))
		}
	}
}
