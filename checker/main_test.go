package checker

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestMainEndToEnd runs `dialkv check` on histories from testdata and reads
// the reports it writes.
func TestMainEndToEnd(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run") // a simulator run directory
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{"divergence.jsonl": "history.jsonl", "divergence.replicas.jsonl": "replicas.jsonl"} {
		b, err := os.ReadFile(filepath.Join("testdata", from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(runDir, to), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		args []string
		code int
		want []string // substrings of stdout
	}{
		{"valid", []string{"--history", "testdata/valid-register.jsonl", "--replicas", "testdata/valid-register.replicas.jsonl", "--checks", "all", "--out", filepath.Join(dir, "valid")}, 0, []string{"verdict: ok", "linearizable       ok"}},
		{"violation", []string{"--history", "testdata/nonlinearizable-cas.jsonl", "--checks", "linearizable,session", "--out", filepath.Join(dir, "bad")}, 1, []string{"verdict: violation", "linearizable       violation"}},
		{"divergence", []string{"--history", "testdata/divergence.jsonl", "--replicas", "testdata/divergence.replicas.jsonl", "--checks", "convergence"}, 1, []string{`first: "x"`}},
		{"replicas beside", []string{"--history", filepath.Join(runDir, "history.jsonl"), "--checks", "convergence"}, 1, []string{"(beside the history)", `first: "x"`}},
		{"stale bound", []string{"--history", "testdata/stale-read.jsonl", "--checks", "staleness", "--max-stale", "0"}, 1, []string{"staleness          violation"}},
		{"causal-memory too large", []string{"--history", "testdata/valid-register.jsonl", "--checks", "causal-memory", "--cm-limit", "2"}, 2, []string{"verdict: unknown"}},
		{"help", []string{"--help"}, 0, []string{"Usage: dialkv check", "Exit codes"}},
		{"no history", []string{"--checks", "session"}, 3, nil},
		{"bad check", []string{"--history", "testdata/valid-register.jsonl", "--checks", "nope"}, 3, nil},
		{"stray arg", []string{"--history", "testdata/valid-register.jsonl", "extra"}, 3, nil},
		{"missing file", []string{"--history", filepath.Join(dir, "absent.jsonl")}, 2, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runMain(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
		})
	}
	// The reports of the violation run.
	for _, f := range []string{"summary.md", "summary.json", "report.html", "porcupine-1.html"} {
		b, err := os.ReadFile(filepath.Join(dir, "bad", f))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			t.Errorf("%s is empty", f)
		}
	}
	var res Result
	b, _ := os.ReadFile(filepath.Join(dir, "bad", "summary.json"))
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	if res.Verdict != VerdictViolation || res.Get(CheckLinearizable).Verdict != VerdictViolation || len(res.Get(CheckLinearizable).Anomalies) != 1 {
		t.Errorf("summary.json: %+v", res)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "bad", "summary.md"))
	if !strings.Contains(string(md), "non-linearizable") || !strings.Contains(string(md), `cas(x, "a", "c")`) {
		t.Errorf("summary.md lacks the anomaly and its operations:\n%s", md)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "bad", "report.html"))
	if !strings.Contains(string(page), "<iframe srcdoc=") || !strings.Contains(string(page), "Porcupine visualization of key") {
		t.Errorf("report.html lacks Porcupine's visualization")
	}
}

// TestMainTimeoutIsExit2: a linearizability check that runs out of time is
// exit code 2, never a pass.
func TestMainTimeoutIsExit2(t *testing.T) {
	p := filepath.Join(t.TempDir(), "history.jsonl")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteHistory(f, genHistory(3, 2000, 20, 8)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	code, out, errs := runMain(t, "--history", p, "--checks", "linearizable", "--timeout", "1ns")
	if code != 2 || !strings.Contains(out, "linearizable       unknown") || !strings.Contains(out, "verdict: unknown") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if code, out, _ := runMain(t, "--history", p, "--checks", "linearizable"); code != 0 {
		t.Fatalf("with time: exit %d\n%s", code, out)
	}
}

// TestMainUnreadable: a malformed history is exit 2 with the line named.
func TestMainUnreadable(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"garbage":   "{\"id\":0,\"f\":\"get\"\nnot json\n",
		"outcome":   `{"id":0,"f":"get","key":"x","invoke":0,"complete":1,"outcome":"maybe"}` + "\n",
		"args":      `{"id":0,"f":"put","key":"x","invoke":0,"complete":1,"outcome":"ok"}` + "\n",
		"time":      `{"id":0,"f":"get","key":"x","invoke":5,"complete":1,"outcome":"ok"}` + "\n",
		"incrdelta": `{"id":0,"f":"incr","key":"x","args":["one"],"invoke":0,"complete":1,"outcome":"ok"}` + "\n",
	} {
		p := filepath.Join(dir, name+".jsonl")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errs := runMain(t, "--history", p)
		if code != 2 || !strings.Contains(errs, "line 1") && !strings.Contains(errs, "line 2") {
			t.Errorf("%s: exit %d, stderr %q; want 2 naming the line", name, code, errs)
		}
	}
}
