package sim

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/consistency/primarybackup"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/sim/simrun"
)

// Strategy is one sans-IO strategy the simulator can drive.
type Strategy struct {
	Name    string
	Factory consistency.Factory
	Bugs    []consistency.Bug
	// Checks are the checker checks that must pass for the correct variant.
	Checks []string
	// Params, when set, fills in strategy parameters the run did not give,
	// from the simulated topology (region[i] is node i's region).
	Params func(params map[string]string, o simrun.Options, peers []consistency.NodeID, region []int)
	// Workload is the default workload when the run names none ("" =
	// the global default), for strategies that serve only some data types.
	Workload string
}

// Strategies lists the sans-IO strategies, in --strategy order. Raft is
// run by sim/raftsim instead (see Run).
func Strategies() []Strategy {
	return []Strategy{
		{Name: primarybackup.Name, Factory: primarybackup.Factory, Bugs: primarybackup.Bugs(),
			Checks: []string{checker.CheckLinearizable, checker.CheckSession, checker.CheckConvergence, checker.CheckDurability}},
		{Name: "quorum", Factory: quorum.New, Bugs: quorum.Bugs(), Checks: []string{checker.CheckConvergence, checker.CheckDurability},
			Params: quorumParams},
		{Name: "causal", Factory: causal.New, Bugs: causal.Bugs(),
			Checks: []string{checker.CheckSession, checker.CheckCausal, checker.CheckConvergence, checker.CheckDurability},
			Params: causalRegions, Workload: "register"},
	}
}

// causalRegions maps the simulated regions onto causal's "regions"
// parameter ("r0:n1,n3;r1:n2") unless the run gives one.
func causalRegions(params map[string]string, _ simrun.Options, peers []consistency.NodeID, region []int) {
	if _, ok := params["regions"]; ok {
		return
	}
	byRegion := map[int][]string{}
	maxR := 0
	for i, p := range peers {
		byRegion[region[i]] = append(byRegion[region[i]], string(p))
		maxR = max(maxR, region[i])
	}
	if maxR == 0 {
		return
	}
	var parts []string
	for r := 0; r <= maxR; r++ {
		parts = append(parts, fmt.Sprintf("r%d:%s", r, strings.Join(byRegion[r], ",")))
	}
	params["regions"] = strings.Join(parts, ";")
}

// AllBugs lists every strategy's deliberately broken variants: the one
// place --list-bugs reads.
func AllBugs() []consistency.Bug {
	var out []consistency.Bug
	for _, s := range Strategies() {
		out = append(out, s.Bugs...)
	}
	out = append(out, raftBugs()...)
	return out
}

func hasBug(s Strategy, name string) bool {
	return slices.ContainsFunc(s.Bugs, func(b consistency.Bug) bool { return b.Name == name })
}

func lookup(name string) (Strategy, bool) {
	for _, s := range Strategies() {
		if s.Name == name {
			return s, true
		}
	}
	return Strategy{}, false
}

// StrategyNames lists every --strategy value.
func StrategyNames() []string {
	var out []string
	for _, s := range Strategies() {
		out = append(out, s.Name)
	}
	return append(out, "raft")
}

// ErrUsage marks errors in the options (exit code 3).
type ErrUsage struct{ Err error }

func (e *ErrUsage) Error() string { return e.Err.Error() }
func (e *ErrUsage) Unwrap() error { return e.Err }

// Run runs one simulation and, when opts.Out is set, writes its report.
func Run(opts simrun.Options) (simrun.Result, error) {
	o, err := run(opts, opts.Out != "")
	if err != nil {
		return simrun.Result{}, err
	}
	if opts.Out != "" {
		if err := writeReport(opts.Out, o); err != nil {
			return o.res, err
		}
		o.res.ReportDir = opts.Out
	}
	return o.res, nil
}

func run(opts simrun.Options, withTrace bool) (*outcome, error) {
	if opts.Strategy == "raft" {
		return runRaft(opts.Normalize(), withTrace)
	}
	s, ok := lookup(opts.Normalize().Strategy)
	if !ok {
		return nil, &ErrUsage{fmt.Errorf("sim: unknown strategy %q (known: %v)", opts.Strategy, StrategyNames())}
	}
	if opts.Workload == "" && s.Workload != "" {
		opts.Workload = s.Workload
	}
	opts = opts.Normalize()
	o, err := runSansIO(opts, s, withTrace)
	if err != nil {
		return nil, &ErrUsage{err}
	}
	return o, nil
}

// quorumParams picks the CRDT resolver when the workload has counters or
// sets (the siblings resolver serves only registers).
func quorumParams(params map[string]string, o simrun.Options, _ []consistency.NodeID, _ []int) {
	if _, ok := params["resolve"]; !ok && o.Workload != "register" {
		params["resolve"] = "crdt"
	}
}
