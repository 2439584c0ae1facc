package checker

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Verdict is the outcome of one check.
type Verdict string

// The verdicts. A check that could not finish (a timeout, a history too large
// for it) is Unknown, never OK.
const (
	VerdictOK        Verdict = "ok"        // checked, no anomaly found
	VerdictViolation Verdict = "violation" // at least one anomaly found
	VerdictUnknown   Verdict = "unknown"   // the check could not finish
	VerdictSkipped   Verdict = "skipped"   // not requested or nothing it applies to
)

// Check names, as used by Options.Checks and `dialkv check --checks`.
const (
	CheckLinearizable      = "linearizable"
	CheckSession           = "session"
	CheckCausal            = "causal"
	CheckCausalMemory      = "causal-memory"
	CheckCausalConvergence = "causal-convergence"
	CheckConvergence       = "convergence"
	CheckDurability        = "durability"
	CheckStaleness         = "staleness"
	CheckBank              = "bank"
)

// AllChecks lists every check in report order.
var AllChecks = []string{CheckLinearizable, CheckSession, CheckCausal, CheckCausalConvergence, CheckCausalMemory, CheckConvergence, CheckDurability, CheckStaleness}

// WorkloadChecks are checks of one workload's invariant (bank: the bank
// workload's totals). They run only when named, after AllChecks; "all"
// does not include them.
var WorkloadChecks = []string{CheckBank}

// DefaultChecks are the checks run when Options.Checks is empty.
var DefaultChecks = []string{CheckLinearizable, CheckSession, CheckCausal, CheckConvergence, CheckDurability, CheckStaleness}

// Options selects and tunes the checks.
type Options struct {
	// Checks to run (names above); empty means DefaultChecks.
	Checks []string
	// Timeout bounds the linearizability search (default 60s). When it
	// expires the linearizable verdict is unknown unless a violation was
	// already found.
	Timeout time.Duration
	// BoundStaleness makes the staleness check a violation for any read
	// that lagged more than MaxStaleVersions acknowledged writes. Off (the
	// zero value and the default), staleness is only measured.
	BoundStaleness   bool
	MaxStaleVersions int
	// MaxExamples bounds the anomalies kept per check (default 10); the
	// counts are always complete.
	MaxExamples int
	// CausalMemoryLimit is the largest history (operations) the
	// causal-memory check attempts (default 5000); larger ones are unknown.
	CausalMemoryLimit int
	// NoRealTimeOrder stops the session and staleness checks from ordering
	// a key's writes by real time when the key has no trusted versions:
	// only the initial value is then known to be older than a write. Set
	// it for stores whose arbitration may contradict real time (last
	// writer wins under clock skew) and that report no per-key versions.
	NoRealTimeOrder bool
	// Visualize asks the linearizability check for Porcupine's HTML
	// visualization of up to this many offending keys (default 3 via
	// DefaultOptions; 0 disables).
	Visualize int
}

// DefaultOptions returns the options `dialkv check` starts from.
func DefaultOptions() Options {
	return Options{Timeout: 60 * time.Second, MaxExamples: 10, CausalMemoryLimit: 5000, Visualize: 3}
}

// Anomaly is one violation found by a check, with the operations that show it.
type Anomaly struct {
	Kind    string `json:"kind"`          // e.g. read-your-writes, WriteCORead, lost-write
	Key     string `json:"key,omitempty"` // the key involved, when there is one
	Message string `json:"message"`       // one sentence for people
	Ops     []Op   `json:"ops,omitempty"` // the operations involved, in history order
	at      int    // 1 + index of the operation that showed it, for tests (0: unset)
}

// CheckResult is the outcome of one check.
type CheckResult struct {
	Name      string           `json:"name"`
	Verdict   Verdict          `json:"verdict"`
	Summary   string           `json:"summary"`
	Counts    map[string]int64 `json:"counts,omitempty"`    // what was looked at and what was found
	Anomalies []Anomaly        `json:"anomalies,omitempty"` // the first / worst ones, at most Options.MaxExamples
	Notes     []string         `json:"notes,omitempty"`     // assumptions, reasons for skipped/unknown
	Staleness *StalenessStats  `json:"staleness,omitempty"` // only for the staleness check
	// Visualizations holds Porcupine's HTML for offending keys (linearizable only).
	Visualizations []Visualization `json:"-"`
}

// Visualization is a self-contained Porcupine HTML page for one key.
type Visualization struct {
	Key  string
	HTML []byte
}

// Result is the outcome of Check.
type Result struct {
	Verdict  Verdict       `json:"verdict"` // violation if any check found one, else unknown if any could not finish, else ok
	Ops      int           `json:"ops"`
	Keys     int           `json:"keys"`
	Sessions int           `json:"sessions"`
	Replicas int           `json:"replicas"`
	Checks   []CheckResult `json:"checks"`
	Elapsed  time.Duration `json:"elapsed_ns"`
}

// Get returns the result of the named check, or nil.
func (r Result) Get(name string) *CheckResult {
	for i := range r.Checks {
		if r.Checks[i].Name == name {
			return &r.Checks[i]
		}
	}
	return nil
}

// ExitCode maps the overall verdict to `dialkv check`'s exit code: 1 for a
// violation, 2 when a check could not finish, 0 otherwise.
func (r Result) ExitCode() int {
	switch r.Verdict {
	case VerdictViolation:
		return 1
	case VerdictUnknown:
		return 2
	}
	return 0
}

// ParseChecks parses a comma-separated list of check names ("all" for
// every check).
func ParseChecks(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		names := []string{name}
		if name == "all" {
			names = AllChecks
		} else if !validCheck(name) {
			return nil, fmt.Errorf("checker: unknown check %q (known: %s, %s, all)", name, strings.Join(AllChecks, ", "), strings.Join(WorkloadChecks, ", "))
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("checker: no checks named")
	}
	return out, nil
}

func validCheck(name string) bool {
	for _, c := range append(AllChecks[:len(AllChecks):len(AllChecks)], WorkloadChecks...) {
		if c == name {
			return true
		}
	}
	return false
}

// Check runs the selected checks over a history (and, for convergence, the
// replica states taken after quiescence) and returns their verdicts. It
// never modifies ops. It is deterministic except for the linearizability
// timeout.
func Check(ops []Op, replicas []ReplicaState, opts Options) Result {
	start := time.Now()
	if opts.MaxExamples <= 0 {
		opts.MaxExamples = 10
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.CausalMemoryLimit <= 0 {
		opts.CausalMemoryLimit = 5000
	}
	checks := opts.Checks
	if len(checks) == 0 {
		checks = DefaultChecks
	}
	want := map[string]bool{}
	for _, c := range checks {
		want[c] = true
	}
	h := newHistory(ops)
	h.noRealTime = opts.NoRealTimeOrder
	res := Result{Ops: len(ops), Keys: len(h.keys), Sessions: len(h.sessions), Replicas: len(replicas)}
	for _, name := range append(AllChecks[:len(AllChecks):len(AllChecks)], WorkloadChecks...) {
		if !want[name] {
			continue
		}
		var cr CheckResult
		switch name {
		case CheckLinearizable:
			cr = checkLinearizable(h, opts)
		case CheckSession:
			cr = checkSession(h, opts)
		case CheckCausal, CheckCausalConvergence, CheckCausalMemory:
			cr = checkCausal(h, opts, name)
		case CheckConvergence:
			cr = checkConvergence(replicas, opts)
		case CheckDurability:
			cr = checkDurability(h, opts)
		case CheckStaleness:
			cr = checkStaleness(h, opts)
		case CheckBank:
			cr = checkBank(h, opts)
		}
		cr.Name = name
		res.Checks = append(res.Checks, cr)
	}
	res.Verdict = VerdictOK
	for _, c := range res.Checks {
		if c.Verdict == VerdictViolation {
			res.Verdict = VerdictViolation
		} else if c.Verdict == VerdictUnknown && res.Verdict != VerdictViolation {
			res.Verdict = VerdictUnknown
		}
	}
	res.Elapsed = time.Since(start)
	return res
}

// collector gathers anomalies for one check: all are counted, the first
// max are kept.
type collector struct {
	max    int
	total  int64
	byKind map[string]int64
	kept   []Anomaly
}

func newCollector(max int) *collector { return &collector{max: max, byKind: map[string]int64{}} }

func (c *collector) add(a Anomaly) {
	c.total++
	c.byKind[a.Kind]++
	if len(c.kept) < c.max {
		sort.SliceStable(a.Ops, func(i, j int) bool { return a.Ops[i].ID < a.Ops[j].ID })
		c.kept = append(c.kept, a)
	}
}

// verdict returns violation when anything was collected, else ok.
func (c *collector) verdict() Verdict {
	if c.total > 0 {
		return VerdictViolation
	}
	return VerdictOK
}

func (c *collector) fill(cr *CheckResult) {
	if cr.Counts == nil {
		cr.Counts = map[string]int64{}
	}
	cr.Counts["anomalies"] = c.total
	for k, n := range c.byKind {
		cr.Counts["anomaly:"+k] = n
	}
	cr.Anomalies = c.kept
}

// describe renders an operation compactly for messages and reports.
func describe(op *Op) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s %s(%s", op.ID, sessionOf(op), op.F, op.Key)
	for _, a := range op.Args {
		fmt.Fprintf(&b, ", %q", a)
	}
	b.WriteString(")")
	switch op.Outcome {
	case OK:
		switch {
		case op.Value != nil:
			fmt.Fprintf(&b, " -> %q", *op.Value)
		case op.Values != nil:
			fmt.Fprintf(&b, " -> %q", op.Values)
		case op.Int != nil:
			fmt.Fprintf(&b, " -> %d", *op.Int)
		case isRead(op.F):
			b.WriteString(" -> nil")
		default:
			b.WriteString(" ok")
		}
	case Fail:
		fmt.Fprintf(&b, " fail(%s)", op.Error)
	default:
		b.WriteString(" unknown")
	}
	if op.Complete != nil {
		fmt.Fprintf(&b, " [%d,%d]", op.Invoke, *op.Complete)
	} else {
		fmt.Fprintf(&b, " [%d,∞)", op.Invoke)
	}
	if op.Version != 0 {
		fmt.Fprintf(&b, " v%d", op.Version)
	}
	if op.Node != "" {
		fmt.Fprintf(&b, " @%s", op.Node)
	}
	return b.String()
}

func isRead(f string) bool { return f == FGet || f == FSMembers }
