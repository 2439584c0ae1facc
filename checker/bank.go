package checker

import (
	"fmt"
	"strconv"
	"strings"
)

// checkBank checks the bank workload: every successful balances read sums
// to 0 (the accounts start absent and every transfer moves money between
// two of them). A read whose values do not parse is malformed and counted
// as a violation too: it cannot be shown to keep the total.
func checkBank(h *history, opts Options) CheckResult {
	cr := CheckResult{Counts: map[string]int64{}}
	col := newCollector(opts.MaxExamples)
	for i := range h.ops {
		op := &h.ops[i]
		switch op.F {
		case FTransfer:
			cr.Counts["transfers"]++
		case FBalances:
			if op.Outcome != OK {
				continue
			}
			cr.Counts["reads"]++
			var total int64
			var bad []string
			for j, v := range op.Values {
				if v == "" {
					continue
				}
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					bad = append(bad, fmt.Sprintf("%s=%q", account(op, j), v))
					continue
				}
				total += n
			}
			switch {
			case len(bad) > 0:
				col.add(Anomaly{Kind: "bank-unreadable", Message: fmt.Sprintf("balances read %d has non-integer balances %s", op.ID, strings.Join(bad, ", ")),
					Ops: []Op{*op}, at: i + 1})
			case total != 0:
				col.add(Anomaly{Kind: "bank-total", Message: fmt.Sprintf("balances read %d sums to %d, not 0: it saw part of a transfer (%s)", op.ID, total, balancesString(op)),
					Ops: []Op{*op}, at: i + 1})
			}
		}
	}
	col.fill(&cr)
	cr.Verdict = col.verdict()
	switch {
	case cr.Counts["reads"] == 0:
		cr.Verdict = VerdictSkipped
		cr.Summary = "no successful balances read (bank workload) in the history"
	case col.total > 0:
		cr.Summary = fmt.Sprintf("%d of %d balances reads do not sum to 0", col.total, cr.Counts["reads"])
	default:
		cr.Summary = fmt.Sprintf("all %d balances reads sum to 0 (%d transfers)", cr.Counts["reads"], cr.Counts["transfers"])
	}
	return cr
}

// account names the j-th account of a balances read.
func account(op *Op, j int) string {
	if j < len(op.Args) {
		return op.Args[j]
	}
	return fmt.Sprintf("#%d", j)
}

func balancesString(op *Op) string {
	parts := make([]string, len(op.Values))
	for j, v := range op.Values {
		if v == "" {
			v = "0"
		}
		parts[j] = account(op, j) + "=" + v
	}
	return strings.Join(parts, " ")
}
