package checker

import (
	"fmt"
	"sort"
	"strconv"
)

// checkConvergence checks that every replica's state after quiescence is
// the same; otherwise it names the first key (in sorted order) on which two
// replicas differ, with every replica's value of it.
//
// Under a sharded strategy a replica lists in Holds the keys it is
// responsible for: a key is then compared only across the replicas that hold
// it (Holds nil = every key), a missing entry in Data meaning "absent"; keys
// a replica has in Data but does not hold (leftovers such as handed-off
// hints) are ignored.
func checkConvergence(replicas []ReplicaState, opts Options) CheckResult {
	cr := CheckResult{Counts: map[string]int64{"replicas": int64(len(replicas))}}
	if len(replicas) == 0 {
		cr.Verdict, cr.Summary = VerdictSkipped, "no replica states given (replicas.jsonl)"
		return cr
	}
	keys := map[string]bool{}
	holds := make([]map[string]bool, len(replicas)) // nil = holds every key
	sharded := false
	for i, r := range replicas {
		for k := range r.Data {
			keys[k] = true
		}
		if r.Holds != nil {
			sharded = true
			holds[i] = make(map[string]bool, len(r.Holds))
			for _, k := range r.Holds {
				holds[i][k] = true
				keys[k] = true
			}
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
	var members []int
	for _, k := range sorted {
		members = members[:0]
		for i := range replicas {
			if holds[i] == nil || holds[i][k] {
				members = append(members, i)
			}
		}
		if len(members) < 2 {
			continue
		}
		v0, ok0 := replicas[members[0]].Data[k]
		differ := false
		for _, i := range members[1:] {
			if v, ok := replicas[i].Data[k]; ok != ok0 || v != v0 {
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
		for _, i := range members {
			r := replicas[i]
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
	if sharded {
		cr.Notes = append(cr.Notes, "sharded: each key compared only across the replicas whose holds list it")
	}
	cr.Verdict = col.verdict()
	if col.total > 0 {
		cr.Summary = fmt.Sprintf("%d of %d keys differ between %d replicas; first: %q", col.total, len(sorted), len(replicas), first)
	} else {
		cr.Summary = fmt.Sprintf("%d replicas agree on all %d keys", len(replicas), len(sorted))
	}
	return cr
}
