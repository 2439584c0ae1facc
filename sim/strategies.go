package sim

import (
	"fmt"
	"slices"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/primarybackup"
	"github.com/dialkv/dialkv/sim/simrun"
)

// Strategy is one sans-IO strategy the simulator can drive.
type Strategy struct {
	Name    string
	Factory consistency.Factory
	Bugs    []consistency.Bug
	// Checks are the checker checks that must pass for the correct variant.
	Checks []string
}

// Strategies lists the sans-IO strategies, in --strategy order. Raft is
// run by sim/raftsim instead (see Run).
func Strategies() []Strategy {
	return []Strategy{
		{Name: primarybackup.Name, Factory: primarybackup.Factory, Bugs: primarybackup.Bugs(),
			Checks: []string{checker.CheckLinearizable, checker.CheckSession, checker.CheckConvergence, checker.CheckDurability}},
	}
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
	opts = opts.Normalize()
	if opts.Strategy == "raft" {
		return runRaft(opts, withTrace)
	}
	s, ok := lookup(opts.Strategy)
	if !ok {
		return nil, &ErrUsage{fmt.Errorf("sim: unknown strategy %q (known: %v)", opts.Strategy, StrategyNames())}
	}
	o, err := runSansIO(opts, s, withTrace)
	if err != nil {
		return nil, &ErrUsage{err}
	}
	return o, nil
}
