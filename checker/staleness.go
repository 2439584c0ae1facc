package checker

import (
	"fmt"
	"math"
	"sort"
)

// Dist summarises a distribution.
type Dist struct {
	N    int64   `json:"n"`
	Mean float64 `json:"mean"`
	P50  int64   `json:"p50"`
	P90  int64   `json:"p90"`
	P99  int64   `json:"p99"`
	P999 int64   `json:"p999"`
	Max  int64   `json:"max"`
}

func distOf(xs []int64) Dist {
	if len(xs) == 0 {
		return Dist{}
	}
	s := append([]int64(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum float64
	for _, x := range s {
		sum += float64(x)
	}
	q := func(p float64) int64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	return Dist{N: int64(len(s)), Mean: sum / float64(len(s)), P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: s[len(s)-1]}
}

// StalenessStats is what the staleness check measured.
type StalenessStats struct {
	Reads      int64 `json:"reads"`       // successful reads measured
	StaleReads int64 `json:"stale_reads"` // reads that lagged at least one acknowledged write
	// Versions: how many acknowledged writes, ordered after the write the
	// read returned, had completed before the read was invoked.
	Versions Dist `json:"versions"`
	// TimeNs: how long before the read's invocation the value it returned
	// had been superseded by the first of those writes (0 when fresh).
	TimeNs Dist `json:"time_ns"`
	// Worst are the reads with the largest version lag.
	Worst []Anomaly `json:"worst,omitempty"`
}

// fenwick counts inserted points by rank and keeps the smallest payload of
// the points at or above a rank (ranks are reversed on insert).
type fenwick struct {
	n   int
	cnt []int64
	min []int64
}

func newFenwick(n int) *fenwick {
	f := &fenwick{n: n, cnt: make([]int64, n+1), min: make([]int64, n+1)}
	for i := range f.min {
		f.min[i] = math.MaxInt64
	}
	return f
}

// add inserts a point at rank r (0-based) with payload p.
func (f *fenwick) add(r int, p int64) {
	for i := f.n - r; i <= f.n; i += i & -i {
		f.cnt[i]++
		if p < f.min[i] {
			f.min[i] = p
		}
	}
}

// atOrAbove returns the count and smallest payload of points with rank >= r.
func (f *fenwick) atOrAbove(r int) (int64, int64) {
	var c int64
	m := int64(math.MaxInt64)
	for i := f.n - r; i > 0; i -= i & -i {
		c += f.cnt[i]
		if f.min[i] < m {
			m = f.min[i]
		}
	}
	return c, m
}

// checkStaleness measures, for every successful get of a unique-value
// register key, how many acknowledged writes it lagged and for how long.
func checkStaleness(h *history, opts Options) CheckResult {
	cr := CheckResult{Counts: map[string]int64{}}
	type stale struct {
		read, write, newer int
		versions, ns       int64
	}
	var vers, times []int64
	var worst []stale
	var keys int64
	for _, key := range h.keys {
		k := h.kinfo[key]
		if !k.uniqueRegister() {
			continue
		}
		keys++
		// acknowledged writes, by completion time
		var acked []int
		for _, w := range k.writes {
			if h.ops[w].Outcome == OK {
				acked = append(acked, w)
			}
		}
		sort.Slice(acked, func(a, b int) bool { return *h.ops[acked[a]].Complete < *h.ops[acked[b]].Complete })
		// the order rank of each acknowledged write: version or invocation
		orderOf := func(w int) int64 {
			if k.versioned {
				return int64(h.ops[w].Version)
			}
			return h.ops[w].Invoke
		}
		ranks := make([]int64, len(acked))
		for i, w := range acked {
			ranks[i] = orderOf(w)
		}
		sort.Slice(ranks, func(a, b int) bool { return ranks[a] < ranks[b] })
		rankOf := func(x int64) int { return sort.Search(len(ranks), func(i int) bool { return ranks[i] >= x }) }
		firstAbove := func(x int64) int { return sort.Search(len(ranks), func(i int) bool { return ranks[i] > x }) }
		var reads []int
		for _, i := range k.ops {
			if h.ops[i].F == FGet && h.ops[i].Outcome == OK {
				reads = append(reads, i)
			}
		}
		sort.SliceStable(reads, func(a, b int) bool { return h.ops[reads[a]].Invoke < h.ops[reads[b]].Invoke })
		fw := newFenwick(len(ranks))
		next := 0
		for _, r := range reads {
			rop := &h.ops[r]
			for next < len(acked) && *h.ops[acked[next]].Complete < rop.Invoke {
				w := acked[next]
				fw.add(rankOf(orderOf(w)), *h.ops[w].Complete)
				next++
			}
			ro, ok := h.observed(k, r)
			if !ok || (!ro.initial && ro.write < 0) {
				continue // unattributable (absent on a key with deletes) or thin air
			}
			from := 0 // initial value: every acknowledged write is newer
			if !ro.initial {
				w := &h.ops[ro.write]
				v := h.versionOf(ro, r)
				switch {
				case k.versioned && v == 0:
					continue
				case k.versioned:
					from = firstAbove(int64(v))
				case w.Complete == nil || h.noRealTime:
					from = len(ranks) // cannot tell what is newer
				default:
					from = firstAbove(*w.Complete)
				}
			}
			n, first := fw.atOrAbove(from)
			var lag int64
			if n > 0 {
				lag = rop.Invoke - first
			}
			vers = append(vers, n)
			times = append(times, lag)
			if n > 0 {
				worst = append(worst, stale{read: r, write: ro.write, versions: n, ns: lag})
			}
		}
	}
	st := &StalenessStats{Reads: int64(len(vers)), StaleReads: int64(len(worst)), Versions: distOf(vers), TimeNs: distOf(times)}
	sort.SliceStable(worst, func(a, b int) bool {
		if worst[a].versions != worst[b].versions {
			return worst[a].versions > worst[b].versions
		}
		return worst[a].ns > worst[b].ns
	})
	col := newCollector(opts.MaxExamples)
	for i, s := range worst {
		op := &h.ops[s.read]
		what := "the initial (absent) value"
		if s.write >= 0 {
			what = fmt.Sprintf("%q of op #%d", *valueRead(op), h.ops[s.write].ID)
		}
		a := Anomaly{Kind: "stale-read", Key: op.Key, Ops: h.opsOf(s.write, s.read),
			Message: fmt.Sprintf("op #%d read %s, %d acknowledged write(s) behind; superseded %d ns before the read began", op.ID, what, s.versions, s.ns)}
		if i < opts.MaxExamples {
			st.Worst = append(st.Worst, a)
		}
		if opts.BoundStaleness && s.versions > int64(opts.MaxStaleVersions) {
			col.add(a)
		}
	}
	cr.Staleness = st
	col.fill(&cr)
	cr.Counts["keys"] = keys
	cr.Counts["reads"] = st.Reads
	cr.Counts["stale_reads"] = st.StaleReads
	cr.Notes = append(cr.Notes,
		"measured for successful gets of register keys whose put/cas values are unique",
		"a write is newer than the one read when its version is higher (versioned keys) or it was invoked after the read write completed (otherwise); it counts when it was acknowledged before the read was invoked")
	if opts.BoundStaleness {
		cr.Notes = append(cr.Notes, fmt.Sprintf("bound: a read may lag at most %d acknowledged writes", opts.MaxStaleVersions))
	} else {
		cr.Notes = append(cr.Notes, "no bound given (--max-stale): staleness is measured, never a violation")
	}
	cr.Verdict = col.verdict()
	switch {
	case col.total > 0:
		cr.Summary = fmt.Sprintf("%d reads lagged more than %d acknowledged writes (max %d)", col.total, opts.MaxStaleVersions, st.Versions.Max)
	case st.Reads == 0:
		cr.Verdict, cr.Summary = VerdictSkipped, "no reads of unique-value register keys"
	default:
		cr.Summary = fmt.Sprintf("%d of %d reads stale; versions behind p50/p99/max %d/%d/%d; time behind p50/p99/max %d/%d/%d ns",
			st.StaleReads, st.Reads, st.Versions.P50, st.Versions.P99, st.Versions.Max, st.TimeNs.P50, st.TimeNs.P99, st.TimeNs.Max)
	}
	return cr
}
