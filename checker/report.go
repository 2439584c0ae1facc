package checker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// WriteReports writes the reports of res into dir (created if needed):
// summary.md for people, summary.json for programs (the Result as JSON)
// and report.html, a self-contained page with the verdicts, the anomalies
// and Porcupine's visualization of offending keys (embedded; each is also
// written as porcupine-N.html).
func WriteReports(dir string, res Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("checker: reports: %w", err)
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("checker: reports: summary.json: %w", err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"summary.json", append(js, '\n')},
		{"summary.md", []byte(Markdown(res))},
		{"report.html", []byte(HTML(res))},
	}
	n := 0
	for _, c := range res.Checks {
		for _, v := range c.Visualizations {
			n++
			files = append(files, struct {
				name string
				data []byte
			}{visualizationFile(n), v.HTML})
		}
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("checker: reports: %w", err)
		}
	}
	return nil
}

func sortedCounts(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return out
}

// Markdown renders the summary for people.
func Markdown(res Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Consistency check: %s\n\n", strings.ToUpper(string(res.Verdict)))
	fmt.Fprintf(&b, "History: %d operations, %d keys, %d sessions; %d replica states. Checked in %s.\n\n", res.Ops, res.Keys, res.Sessions, res.Replicas, res.Elapsed.Round(1e6))
	b.WriteString("| check | verdict | summary |\n|---|---|---|\n")
	for _, c := range res.Checks {
		fmt.Fprintf(&b, "| %s | **%s** | %s |\n", c.Name, c.Verdict, strings.ReplaceAll(c.Summary, "|", "\\|"))
	}
	for _, c := range res.Checks {
		fmt.Fprintf(&b, "\n## %s: %s\n\n%s\n\n", c.Name, c.Verdict, c.Summary)
		if len(c.Counts) > 0 {
			fmt.Fprintf(&b, "Counts: %s\n\n", strings.Join(sortedCounts(c.Counts), ", "))
		}
		for _, n := range c.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		if st := c.Staleness; st != nil {
			b.WriteString("\n| staleness | n | mean | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|---|\n")
			for _, d := range []struct {
				name string
				d    Dist
			}{{"versions behind", st.Versions}, {"time behind (ns)", st.TimeNs}} {
				fmt.Fprintf(&b, "| %s | %d | %.2f | %d | %d | %d | %d | %d |\n", d.name, d.d.N, d.d.Mean, d.d.P50, d.d.P90, d.d.P99, d.d.P999, d.d.Max)
			}
			if len(st.Worst) > 0 {
				b.WriteString("\nWorst reads:\n")
				writeAnomaliesMD(&b, st.Worst)
			}
		}
		if len(c.Anomalies) > 0 {
			fmt.Fprintf(&b, "\nAnomalies (%d shown of %d):\n", len(c.Anomalies), c.Counts["anomalies"])
			writeAnomaliesMD(&b, c.Anomalies)
		}
		if len(c.Visualizations) > 0 {
			fmt.Fprintf(&b, "\nPorcupine's visualization of the offending keys is in report.html (and %s...).\n", visualizationFile(1))
		}
	}
	return b.String()
}

func writeAnomaliesMD(b *strings.Builder, as []Anomaly) {
	for i, a := range as {
		fmt.Fprintf(b, "\n%d. **%s**", i+1, a.Kind)
		if a.Key != "" {
			fmt.Fprintf(b, " on key `%s`", a.Key)
		}
		fmt.Fprintf(b, ": %s\n", a.Message)
		if len(a.Ops) > 0 {
			b.WriteString("\n   ```\n")
			for j := range a.Ops {
				fmt.Fprintf(b, "   %s\n", describe(&a.Ops[j]))
			}
			b.WriteString("   ```\n")
		}
	}
}

// HTML renders a self-contained report page.
func HTML(res Result) string {
	var b strings.Builder
	e := html.EscapeString
	b.WriteString(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>dialkv consistency check</title><style>
body{font-family:sans-serif;margin:2em;max-width:80em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.ok{color:#070}.violation{color:#b00}.unknown{color:#a60}.skipped{color:#777}pre{background:#f6f6f6;padding:.5em;overflow:auto}
iframe{width:100%;height:40em;border:1px solid #ccc}</style></head><body>`)
	fmt.Fprintf(&b, "<h1>Consistency check: <span class=%q>%s</span></h1>", res.Verdict, e(strings.ToUpper(string(res.Verdict))))
	fmt.Fprintf(&b, "<p>%d operations, %d keys, %d sessions, %d replica states; checked in %s.</p>", res.Ops, res.Keys, res.Sessions, res.Replicas, res.Elapsed.Round(1e6))
	b.WriteString("<table><tr><th>check</th><th>verdict</th><th>summary</th></tr>")
	for _, c := range res.Checks {
		fmt.Fprintf(&b, "<tr><td><a href=\"#%s\">%s</a></td><td class=%q>%s</td><td>%s</td></tr>", e(c.Name), e(c.Name), c.Verdict, c.Verdict, e(c.Summary))
	}
	b.WriteString("</table>")
	nvis := 0
	for _, c := range res.Checks {
		fmt.Fprintf(&b, "<h2 id=%q>%s: <span class=%q>%s</span></h2><p>%s</p>", c.Name, e(c.Name), c.Verdict, c.Verdict, e(c.Summary))
		if len(c.Counts) > 0 {
			fmt.Fprintf(&b, "<p>Counts: %s</p>", e(strings.Join(sortedCounts(c.Counts), ", ")))
		}
		if len(c.Notes) > 0 {
			b.WriteString("<ul>")
			for _, n := range c.Notes {
				fmt.Fprintf(&b, "<li>%s</li>", e(n))
			}
			b.WriteString("</ul>")
		}
		if st := c.Staleness; st != nil {
			b.WriteString("<table><tr><th>staleness</th><th>n</th><th>mean</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>")
			for _, d := range []struct {
				name string
				d    Dist
			}{{"versions behind", st.Versions}, {"time behind (ns)", st.TimeNs}} {
				fmt.Fprintf(&b, "<tr><td>%s</td><td>%d</td><td>%.2f</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td></tr>", d.name, d.d.N, d.d.Mean, d.d.P50, d.d.P90, d.d.P99, d.d.P999, d.d.Max)
			}
			b.WriteString("</table>")
			if len(st.Worst) > 0 {
				b.WriteString("<h3>Worst reads</h3>")
				writeAnomaliesHTML(&b, st.Worst)
			}
		}
		if len(c.Anomalies) > 0 {
			fmt.Fprintf(&b, "<h3>Anomalies (%d shown of %d)</h3>", len(c.Anomalies), c.Counts["anomalies"])
			writeAnomaliesHTML(&b, c.Anomalies)
		}
		for _, v := range c.Visualizations {
			nvis++
			fmt.Fprintf(&b, "<h3>Porcupine visualization of key %s</h3><p>Also as a page of its own: <a href=%q>%s</a> (written beside this report).</p><iframe srcdoc=\"%s\"></iframe>",
				e(fmt.Sprintf("%q", v.Key)), visualizationFile(nvis), visualizationFile(nvis), e(string(v.HTML)))
		}
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

func writeAnomaliesHTML(b *strings.Builder, as []Anomaly) {
	e := html.EscapeString
	b.WriteString("<ol>")
	for _, a := range as {
		fmt.Fprintf(b, "<li><b>%s</b>", e(a.Kind))
		if a.Key != "" {
			fmt.Fprintf(b, " on key <code>%s</code>", e(a.Key))
		}
		fmt.Fprintf(b, ": %s", e(a.Message))
		if len(a.Ops) > 0 {
			var p bytes.Buffer
			for j := range a.Ops {
				p.WriteString(describe(&a.Ops[j]))
				p.WriteByte('\n')
			}
			fmt.Fprintf(b, "<pre>%s</pre>", e(p.String()))
		}
		b.WriteString("</li>")
	}
	b.WriteString("</ol>")
}

func visualizationFile(n int) string { return fmt.Sprintf("porcupine-%d.html", n) }
