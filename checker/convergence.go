package checker

import (
	"fmt"
	"sort"
	"strconv"
)

// checkConvergence checks that every replica's state after quiescence is
// the same; otherwise it names the first key (in sorted order) on which two
// replicas differ, with every replica's value of it.
func checkConvergence(replicas []ReplicaState, opts Options) CheckResult {
	cr := CheckResult{Counts: map[string]int64{"replicas": int64(len(replicas))}}
	if len(replicas) == 0 {
		cr.Verdict, cr.Summary = VerdictSkipped, "no replica states given (replicas.jsonl)"
		return cr
	}
	keys := map[string]bool{}
	for _, r := range replicas {
		for k := range r.Data {
			keys[k] = true
		}
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	cr.Counts["keys"] = int64(len(sorted))
	col := newCollector(opts.MaxExamples)
	var first string
	for _, k := range sorted {
		v0, ok0 := replicas[0].Data[k]
		differ := false
		for _, r := range replicas[1:] {
			if v, ok := r.Data[k]; ok != ok0 || v != v0 {
				differ = true
				break
			}
		}
		if !differ {
			continue
		}
		if first == "" {
			first = k
		}
		msg := fmt.Sprintf("replicas differ on key %q:", k)
		for _, r := range replicas {
			if v, ok := r.Data[k]; ok {
				msg += fmt.Sprintf(" %s=%s", r.Node, strconv.Quote(v))
			} else {
				msg += fmt.Sprintf(" %s=(absent)", r.Node)
			}
		}
		col.add(Anomaly{Kind: "divergence", Key: k, Message: msg})
	}
	col.fill(&cr)
	cr.Notes = append(cr.Notes, "replica states must be taken after quiescence (no writes in flight, anti-entropy finished)")
	cr.Verdict = col.verdict()
	if col.total > 0 {
		cr.Summary = fmt.Sprintf("%d of %d keys differ between %d replicas; first: %q", col.total, len(sorted), len(replicas), first)
	} else {
		cr.Summary = fmt.Sprintf("%d replicas agree on all %d keys", len(replicas), len(sorted))
	}
	return cr
}
