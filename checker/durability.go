package checker

import (
	"fmt"
)

// checkDurability finds acknowledged set additions missing from the final
// read of their set (lost writes, Jepsen's set workload) and reads that
// return values no operation wrote (thin-air reads and phantom members).
func checkDurability(h *history, opts Options) CheckResult {
	cr := CheckResult{Counts: map[string]int64{}}
	col := newCollector(opts.MaxExamples)
	var setKeys, acked, present, unknownAdds, recovered, regReads int64
	for _, key := range h.keys {
		k := h.kinfo[key]
		if k.set {
			setKeys++
			added := map[string][]int{}  // element -> sadd ops that may have happened
			removed := map[string]bool{} // element -> some srem may have happened
			final := -1
			for _, i := range k.ops {
				op := &h.ops[i]
				switch {
				case op.F == FSAdd && op.Outcome != Fail:
					added[op.Args[0]] = append(added[op.Args[0]], i)
				case op.F == FSRem && op.Outcome != Fail:
					removed[op.Args[0]] = true
				}
			}
			for _, i := range k.ops {
				op := &h.ops[i]
				if op.F != FSMembers || op.Outcome != OK {
					continue
				}
				if final < 0 || op.Invoke > h.ops[final].Invoke || (op.Invoke == h.ops[final].Invoke && op.ID > h.ops[final].ID) {
					final = i
				}
				for _, e := range op.Values {
					if _, ok := added[e]; !ok {
						col.add(Anomaly{Kind: "thin-air-read", Key: key, Ops: h.opsOf(i),
							Message: fmt.Sprintf("op #%d read member %q of set %q, which no sadd added", op.ID, e, key)})
					}
				}
			}
			if final < 0 {
				continue
			}
			fr := &h.ops[final]
			in := map[string]bool{}
			for _, e := range fr.Values {
				in[e] = true
			}
			for _, i := range k.ops {
				op := &h.ops[i]
				if op.F != FSAdd || op.Outcome == Fail {
					continue
				}
				e := op.Args[0]
				if op.Outcome == Unknown {
					unknownAdds++
					if in[e] {
						recovered++
					}
					continue
				}
				if *op.Complete >= fr.Invoke {
					continue // not acknowledged before the final read began
				}
				acked++
				if in[e] {
					present++
					continue
				}
				if removed[e] {
					continue
				}
				col.add(Anomaly{Kind: "lost-write", Key: key, Ops: h.opsOf(i, final),
					Message: fmt.Sprintf("sadd %q (op #%d) was acknowledged at %d but the final read op #%d (invoked %d) of set %q lacks it", e, op.ID, *op.Complete, fr.ID, fr.Invoke, key)})
			}
			continue
		}
		if !k.register || k.counter {
			continue
		}
		for _, i := range k.ops {
			op := &h.ops[i]
			if op.F != FGet || op.Outcome != OK {
				continue
			}
			regReads++
			vals := op.Values // siblings
			if op.Value != nil {
				vals = []string{*op.Value}
			}
			for _, v := range vals {
				if _, ok := k.byValue[v]; !ok {
					col.add(Anomaly{Kind: "thin-air-read", Key: key, Ops: h.opsOf(i),
						Message: fmt.Sprintf("op #%d read %q from key %q, but no put or cas wrote that value", op.ID, v, key)})
					break
				}
			}
		}
	}
	col.fill(&cr)
	cr.Counts["set_keys"] = setKeys
	cr.Counts["adds_acknowledged"] = acked
	cr.Counts["adds_present"] = present
	cr.Counts["adds_unknown"] = unknownAdds
	cr.Counts["adds_unknown_present"] = recovered
	cr.Counts["register_reads"] = regReads
	cr.Notes = append(cr.Notes,
		"the final read of a set is its successful smembers invoked last; adds acknowledged before it began must be in it unless an srem of the element may have happened",
		"a read is thin-air when no put/cas/sadd that succeeded or may have succeeded wrote its value; counter keys are not checked")
	cr.Verdict = col.verdict()
	switch {
	case col.total > 0:
		cr.Summary = fmt.Sprintf("%d anomalies: %d lost writes, %d thin-air reads", col.total, col.byKind["lost-write"], col.byKind["thin-air-read"])
	case setKeys == 0 && regReads == 0:
		cr.Verdict, cr.Summary = VerdictSkipped, "no set keys and no register reads"
	default:
		cr.Summary = fmt.Sprintf("no lost writes (%d acknowledged adds on %d sets, all present) and no thin-air reads among %d register reads", acked, setKeys, regReads)
	}
	return cr
}
