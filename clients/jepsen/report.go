package jepsen

import (
	"encoding/json"
	"fmt"
	"html"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dialkv/dialkv/checker"
)

// Summary is summary.json: the simulator's summary fields that apply to a
// run on real processes.
type Summary struct {
	Command     string          `json:"command"`
	Backend     string          `json:"backend"`
	Strategy    string          `json:"strategy"`
	Workload    string          `json:"workload"`
	Nodes       int             `json:"nodes"`
	Seed        uint64          `json:"seed"`
	Verdict     string          `json:"verdict"`
	ExitCode    int             `json:"exit_code"`
	Problems    []string        `json:"problems,omitempty"`
	Ops         int             `json:"ops"`
	OK          int             `json:"ok"`
	Failed      int             `json:"fail"`
	Unknown     int             `json:"unknown"`
	RealNS      int64           `json:"real_ns"`
	ConvergedNS int64           `json:"converged_after_heal_ns"`
	MaxGapNS    int64           `json:"max_unavailable_ns"`
	Faults      []string        `json:"faults"`
	Checks      []CheckSummary  `json:"checks"`
	Check       *checker.Result `json:"-"`
}

// CheckSummary is one check's line of the summary.
type CheckSummary struct {
	Name    string          `json:"name"`
	Verdict checker.Verdict `json:"verdict"`
	Summary string          `json:"summary"`
}

// ExitCode maps a verdict to the command's exit status: 0 pass, 1
// violation, 2 unknown.
func ExitCode(verdict string) int {
	switch verdict {
	case "pass":
		return 0
	case "violation":
		return 1
	}
	return 2
}

// MakeSummary summarises res.
func MakeSummary(res *Result, backend string, nodes int, cfg Config) Summary {
	s := Summary{Command: cfg.Command, Backend: backend, Strategy: cfg.Strategy, Workload: cfg.Workload.Kind, Nodes: nodes, Seed: cfg.Seed,
		Verdict: res.Verdict(), Problems: res.Problems, Ops: res.Ops, OK: res.OK, Failed: res.Failed, Unknown: res.Unknown,
		RealNS: int64(res.Elapsed), ConvergedNS: int64(res.Converged), MaxGapNS: int64(res.MaxGap), Faults: res.Faults, Check: &res.Check}
	if s.Strategy == "" {
		s.Strategy = "local"
	}
	s.ExitCode = ExitCode(s.Verdict)
	if s.Faults == nil {
		s.Faults = []string{}
	}
	for _, c := range res.Check.Checks {
		s.Checks = append(s.Checks, CheckSummary{c.Name, c.Verdict, c.Summary})
	}
	return s
}

// WriteReport writes history.jsonl, trace.log (the fault log and each
// node's log), replicas.jsonl, summary.json, summary.md, report.html and
// the checker's reports in check/ into dir.
func WriteReport(dir string, res *Result, s Summary, logs map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("jepsen: report directory: %w", err)
	}
	write := func(name string, b []byte) error {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("jepsen: write %s: %w", name, err)
		}
		return nil
	}
	var hist strings.Builder
	if err := checker.WriteHistory(&hist, res.History); err != nil {
		return fmt.Errorf("jepsen: history: %w", err)
	}
	if err := write("history.jsonl", []byte(hist.String())); err != nil {
		return err
	}
	var trace strings.Builder
	for _, l := range res.Faults {
		trace.WriteString(l + "\n")
	}
	for _, n := range sortedKeys(logs) {
		fmt.Fprintf(&trace, "\n==== %s log ====\n%s", n, logs[n])
	}
	if err := write("trace.log", []byte(trace.String())); err != nil {
		return err
	}
	reps, err := checker.EncodeReplicas(res.Replicas)
	if err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	if err := write("replicas.jsonl", reps); err != nil {
		return err
	}
	js, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("jepsen: summary: %w", err)
	}
	if err := write("summary.json", append(js, '\n')); err != nil {
		return err
	}
	if err := checker.WriteReports(filepath.Join(dir, "check"), res.Check); err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	md := Markdown(s) + "\n## Checker report (check/summary.md)\n\n" + strings.Replace(checker.Markdown(res.Check), "# ", "### ", 1)
	if err := write("summary.md", []byte(md)); err != nil {
		return err
	}
	return write("report.html", []byte(htmlPage(s, res)))
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// Markdown renders the summary for people.
func Markdown(s Summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# dialkv jepsen: %s on %d %s node(s), %s workload — %s\n\n", s.Strategy, s.Nodes, s.Backend, s.Workload, strings.ToUpper(s.Verdict))
	if s.Command != "" {
		fmt.Fprintf(&b, "Reproduce (faults are timed by the wall clock: the history differs run to run): `%s`\n\n", s.Command)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(&b, "- **problem:** %s\n", p)
	}
	if len(s.Problems) > 0 {
		b.WriteString("\n")
	}
	conv := "never (within the limit)"
	if s.ConvergedNS >= 0 {
		conv = time.Duration(s.ConvergedNS).Round(time.Millisecond).String() + " after the last heal"
	}
	fmt.Fprintf(&b, "| what | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| operations | %d (ok %d, fail %d, unknown %d) |\n", s.Ops, s.OK, s.Failed, s.Unknown)
	fmt.Fprintf(&b, "| real time | %v |\n", time.Duration(s.RealNS).Round(time.Millisecond))
	fmt.Fprintf(&b, "| longest time with no successful operation | %v |\n", time.Duration(s.MaxGapNS).Round(time.Millisecond))
	fmt.Fprintf(&b, "| converged | %s |\n\n", conv)
	b.WriteString("## Checks\n\n| check | verdict | summary |\n|---|---|---|\n")
	for _, c := range s.Checks {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.Name, c.Verdict, strings.ReplaceAll(c.Summary, "|", "\\|"))
	}
	fmt.Fprintf(&b, "\n## Fault log (%d lines)\n\n", len(s.Faults))
	for _, f := range s.Faults {
		fmt.Fprintf(&b, "    %s\n", f)
	}
	return b.String()
}

// htmlPage is the checker's page with the run's summary on top.
func htmlPage(s Summary, res *Result) string {
	var top strings.Builder
	fmt.Fprintf(&top, "<section><h1>dialkv jepsen — %s on %d %s node(s), %s: <span class=%q>%s</span></h1>\n",
		html.EscapeString(s.Strategy), s.Nodes, html.EscapeString(s.Backend), html.EscapeString(s.Workload), s.Verdict, s.Verdict)
	fmt.Fprintf(&top, "<p>Command: <code>%s</code></p>\n", html.EscapeString(s.Command))
	for _, p := range s.Problems {
		fmt.Fprintf(&top, "<p class=\"violation\">%s</p>\n", html.EscapeString(p))
	}
	fmt.Fprintf(&top, "<p>operations %d (ok %d, fail %d, unknown %d); real time %v</p>\n<h2>Fault log</h2><pre>%s</pre>\n",
		s.Ops, s.OK, s.Failed, s.Unknown, time.Duration(s.RealNS).Round(time.Millisecond), html.EscapeString(strings.Join(s.Faults, "\n")))
	top.WriteString("<p>Files: history.jsonl, trace.log, replicas.jsonl, summary.json, summary.md; the checker's own reports in check/.</p></section><hr>\n")
	page := checker.HTML(res.Check)
	if i := strings.Index(page, "<body>"); i >= 0 {
		page = page[:i+len("<body>")] + "\n" + top.String() + page[i+len("<body>"):]
	}
	return strings.Replace(page, "<title>dialkv consistency check</title>", "<title>dialkv jepsen "+html.EscapeString(s.Strategy)+": "+s.Verdict+"</title>", 1)
}
