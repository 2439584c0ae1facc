package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/sim/simrun"
)

// summary is summary.json.
type summary struct {
	Command     string             `json:"command"`
	Strategy    string             `json:"strategy"`
	Seed        uint64             `json:"seed"`
	Bug         string             `json:"bug,omitempty"`
	Verdict     simrun.Verdict     `json:"verdict"`
	ExitCode    int                `json:"exit_code"`
	Problems    []string           `json:"problems,omitempty"`
	Ops         int                `json:"ops"`
	OK          int                `json:"ok"`
	Failed      int                `json:"fail"`
	Unknown     int                `json:"unknown"`
	Events      int64              `json:"events"`
	Messages    int64              `json:"messages"`
	VirtualNS   int64              `json:"virtual_ns"`
	RealNS      int64              `json:"real_ns"`
	SettledNS   int64              `json:"settled_after_heal_ns"`
	ConvergedNS int64              `json:"converged_after_heal_ns"`
	RecoveredNS int64              `json:"first_ok_after_heal_ns"`
	IOErrors    int                `json:"disk_io_errors"`
	Corruptions int                `json:"disk_corruptions"`
	CorruptRepl int                `json:"corruption_replies"`
	Rates       map[string]float64 `json:"rates"`
	Faults      []string           `json:"faults"`
	Checks      []checkSummary     `json:"checks"`
	HistoryHash string             `json:"history_sha256"`
	TraceHash   string             `json:"trace_sha256,omitempty"`
	// RingChanges are the run's ring changes (--ring-change), virtual
	// times in ns since the start of the run.
	RingChanges []simrun.RingChange `json:"ring_changes,omitempty"`
}

type checkSummary struct {
	Name    string          `json:"name"`
	Verdict checker.Verdict `json:"verdict"`
	Summary string          `json:"summary"`
}

func makeSummary(o *outcome) summary {
	res := o.res
	s := summary{Command: res.Options.Command(), Strategy: res.Options.Strategy, Seed: res.Options.Seed, Bug: res.Options.Bug,
		Verdict: res.Verdict, ExitCode: res.Verdict.ExitCode(), Problems: res.Problems,
		Ops: res.Ops, OK: res.OK, Failed: res.Failed, Unknown: res.Unknown, Events: res.Events, Messages: res.Messages,
		VirtualNS: int64(res.Virtual), RealNS: int64(res.Real), SettledNS: int64(res.Settled), ConvergedNS: int64(res.Converged), RecoveredNS: int64(res.Recovered),
		IOErrors: res.IOErrors, Corruptions: res.Corruptions, CorruptRepl: res.CorruptReplies,
		Rates: res.Rates, Faults: res.FaultPlan, HistoryHash: res.HistoryHash, TraceHash: res.TraceHash,
		RingChanges: res.RingChanges}
	if s.Faults == nil {
		s.Faults = []string{}
	}
	if o.check != nil {
		for _, c := range o.check.Checks {
			s.Checks = append(s.Checks, checkSummary{c.Name, c.Verdict, c.Summary})
		}
	}
	return s
}

// writeReport writes history.jsonl, trace.log, replicas.jsonl,
// summary.json, summary.md and report.html into dir.
func writeReport(dir string, o *outcome) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sim: report directory: %w", err)
	}
	write := func(name string, b []byte) error {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("sim: write %s: %w", name, err)
		}
		return nil
	}
	if err := write("history.jsonl", o.history); err != nil {
		return err
	}
	if err := write("trace.log", o.trace); err != nil {
		return err
	}
	reps, err := checker.EncodeReplicas(o.replicas)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if err := write("replicas.jsonl", reps); err != nil {
		return err
	}
	s := makeSummary(o)
	js, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("sim: encode summary: %w", err)
	}
	if err := write("summary.json", append(js, '\n')); err != nil {
		return err
	}
	md := summaryMarkdown(s)
	if o.check != nil && len(o.check.Checks) > 0 {
		// The checker's own reports (with Porcupine's visualization of
		// offending keys) go to check/; report.html is the checker's page
		// with the run's summary on top.
		if err := checker.WriteReports(filepath.Join(dir, "check"), *o.check); err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		md += "\n## Checker report (check/summary.md)\n\n" + strings.Replace(checker.Markdown(*o.check), "# ", "### ", 1)
	}
	if err := write("summary.md", []byte(md)); err != nil {
		return err
	}
	return writeHTML(filepath.Join(dir, "report.html"), s, o)
}

func summaryMarkdown(s summary) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# dialkv sim: %s, seed %d — %s\n\n", s.Strategy, s.Seed, strings.ToUpper(string(s.Verdict)))
	fmt.Fprintf(&b, "Reproduce: `%s`\n\n", s.Command)
	if s.Bug != "" {
		fmt.Fprintf(&b, "Deliberately broken variant: `%s`.\n\n", s.Bug)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(&b, "- **problem:** %s\n", p)
	}
	if len(s.Problems) > 0 {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "| what | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| operations | %d (ok %d, fail %d, unknown %d) |\n", s.Ops, s.OK, s.Failed, s.Unknown)
	fmt.Fprintf(&b, "| events / messages delivered | %d / %d |\n", s.Events, s.Messages)
	fmt.Fprintf(&b, "| virtual time | %v |\n", time.Duration(s.VirtualNS))
	fmt.Fprintf(&b, "| real time | %v |\n", time.Duration(s.RealNS).Round(time.Millisecond))
	conv := "never"
	if s.ConvergedNS >= 0 {
		conv = time.Duration(s.ConvergedNS).String() + " after the faults stopped"
	}
	settled := "never"
	if s.SettledNS >= 0 {
		settled = time.Duration(s.SettledNS).String() + " after the faults stopped"
	}
	rec := "never"
	if s.RecoveredNS >= 0 {
		rec = time.Duration(s.RecoveredNS).String() + " after the faults stopped"
	}
	fmt.Fprintf(&b, "| first successful operation | %s |\n", rec)
	fmt.Fprintf(&b, "| settled (final reads start) | %s |\n", settled)
	fmt.Fprintf(&b, "| converged | %s |\n", conv)
	fmt.Fprintf(&b, "| disk faults fired | %d I/O errors, %d corrupted reads (%d CORRUPTION replies) |\n\n", s.IOErrors, s.Corruptions, s.CorruptRepl)
	b.WriteString("## Checks\n\n| check | verdict | summary |\n|---|---|---|\n")
	for _, c := range s.Checks {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", c.Name, c.Verdict, strings.ReplaceAll(c.Summary, "|", "\\|"))
	}
	b.WriteString("\n## Fault rates (swarm-drawn unless fixed by --rates)\n\n")
	for _, k := range sortedKeys(s.Rates) {
		fmt.Fprintf(&b, "- %s = %.4g\n", k, s.Rates[k])
	}
	fmt.Fprintf(&b, "\n## Fault plan (%d faults)\n\n", len(s.Faults))
	for i, f := range s.Faults {
		fmt.Fprintf(&b, "%d. %s\n", i, f)
	}
	return b.String()
}

// simStyle colours the run's verdicts inside the checker's page.
const simStyle = `<style>.pass{color:#070}.safety,.liveness{color:#b00}section code{background:#eee}</style>`

var reportTmpl = template.Must(template.New("r").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>dialkv sim {{.S.Strategy}} seed {{.S.Seed}}: {{.S.Verdict}}</title>
<style>body{font-family:sans-serif;margin:2em;max-width:70em}td,th{border:1px solid #ccc;padding:.2em .5em}
table{border-collapse:collapse}.pass,.ok{color:#070}.safety,.liveness,.violation{color:#b00}code{background:#eee}</style></head>
<body><h1>dialkv sim — {{.S.Strategy}}, seed {{.S.Seed}}: <span class="{{.S.Verdict}}">{{.S.Verdict}}</span></h1>
<p>Reproduce: <code>{{.S.Command}}</code></p>
{{range .S.Problems}}<p class="violation">{{.}}</p>{{end}}
<table><tr><th>operations</th><td>{{.S.Ops}} (ok {{.S.OK}}, fail {{.S.Failed}}, unknown {{.S.Unknown}})</td></tr>
<tr><th>events / messages</th><td>{{.S.Events}} / {{.S.Messages}}</td></tr>
<tr><th>virtual time</th><td>{{.Virtual}}</td></tr></table>
<h2>Checks</h2><table><tr><th>check</th><th>verdict</th><th>summary</th></tr>
{{range .S.Checks}}<tr><td>{{.Name}}</td><td class="{{.Verdict}}">{{.Verdict}}</td><td>{{.Summary}}</td></tr>{{end}}</table>
<h2>Fault plan</h2><ol start="0">{{range .S.Faults}}<li>{{.}}</li>{{end}}</ol>
<p>Files: history.jsonl, trace.log, replicas.jsonl, summary.json, summary.md; the checker's own reports in check/. The checks' verdicts, anomalies and Porcupine's visualization follow.</p></body></html>
`))

func writeHTML(path string, s summary, o *outcome) error {
	var runHTML strings.Builder
	err := reportTmpl.Execute(&runHTML, map[string]any{"S": s, "Virtual": time.Duration(s.VirtualNS).String()})
	if err != nil {
		return fmt.Errorf("sim: write report.html: %w", err)
	}
	page := runHTML.String()
	if o.check != nil && len(o.check.Checks) > 0 {
		// The checker's page, with the run's summary (the body of ours)
		// inserted at the top of its body.
		ch := checker.HTML(*o.check)
		body := page[strings.Index(page, "<body>")+len("<body>") : strings.Index(page, "</body>")]
		if i := strings.Index(ch, "<body>"); i >= 0 {
			page = ch[:i+len("<body>")] + "\n<section>" + body + "</section><hr>\n" + ch[i+len("<body>"):]
			// Our styles and title too.
			if j := strings.Index(page, "</head>"); j >= 0 {
				page = page[:j] + simStyle + page[j:]
			}
			page = strings.Replace(page, "<title>dialkv consistency check</title>",
				fmt.Sprintf("<title>dialkv sim %s seed %d: %s</title>", template.HTMLEscapeString(s.Strategy), s.Seed, s.Verdict), 1)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("sim: write report.html: %w", err)
	}
	w := bufio.NewWriter(f)
	_, err = w.WriteString(page)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sim: write report.html: %w", err)
	}
	return nil
}
