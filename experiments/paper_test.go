package experiments

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite PAPER.md's copied blocks from experiments/results")

// block matches one copied block of PAPER.md: its begin marker names the
// result file, and everything up to the matching end marker is the copy.
var block = regexp.MustCompile(`(?s)<!-- begin (experiments/results/[^ ]+) \(copied verbatim\) -->\n(.*?)<!-- end (experiments/results/[^ ]+) -->`)

// syncPaper returns paper with every copied block replaced by the current
// contents of the result file it names, and the names of the blocks that
// differed.
func syncPaper(root, paper string) (string, []string, error) {
	var stale []string
	var firstErr error
	out := block.ReplaceAllStringFunc(paper, func(m string) string {
		g := block.FindStringSubmatch(m)
		if g[1] != g[3] {
			if firstErr == nil {
				firstErr = fmt.Errorf("PAPER.md: block begins with %s but ends with %s", g[1], g[3])
			}
			return m
		}
		b, err := os.ReadFile(filepath.Join(root, g[1]))
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("PAPER.md copies %s: %w", g[1], err)
			}
			return m
		}
		want := string(b)
		if !strings.HasSuffix(want, "\n") {
			want += "\n"
		}
		if g[2] != want {
			stale = append(stale, g[1])
		}
		return fmt.Sprintf("<!-- begin %s (copied verbatim) -->\n%s<!-- end %s -->", g[1], want, g[1])
	})
	return out, stale, firstErr
}

// TestPaperTablesMatchResults checks that every table PAPER.md copies from
// experiments/results is a verbatim copy of the committed result file, so
// no figure in the paper drifts from the file that backs it. After
// re-running an experiment: go test ./experiments -run TestPaper -update
func TestPaperTablesMatchResults(t *testing.T) {
	root := ".."
	b, err := os.ReadFile(filepath.Join(root, "PAPER.md"))
	if err != nil {
		t.Fatal(err)
	}
	paper := string(b)
	if n := len(block.FindAllString(paper, -1)); n < 8 {
		t.Fatalf("PAPER.md has %d copied result blocks; expected at least 8", n)
	}
	out, stale, err := syncPaper(root, paper)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(filepath.Join(root, "PAPER.md"), []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %d block(s): %v", len(stale), stale)
		return
	}
	for _, s := range stale {
		t.Errorf("PAPER.md's copy of %s differs from the file; run: go test ./experiments -run TestPaper -update (then check the prose around it)", s)
	}
}

// TestSyncPaperFlagsADrift shows the check can fail: a block whose copy
// differs from its file is reported and rewritten.
func TestSyncPaperFlagsADrift(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "experiments/results/x"), 0o755)
	os.WriteFile(filepath.Join(root, "experiments/results/x/table.md"), []byte("| a |\n| 2 |\n"), 0o644)
	paper := "intro\n<!-- begin experiments/results/x/table.md (copied verbatim) -->\n| a |\n| 1 |\n<!-- end experiments/results/x/table.md -->\nend\n"
	out, stale, err := syncPaper(root, paper)
	if err != nil {
		t.Fatal(err)
	}
	if len(stale) != 1 || stale[0] != "experiments/results/x/table.md" {
		t.Fatalf("stale = %v, want the drifted block", stale)
	}
	if !strings.Contains(out, "| 2 |") || strings.Contains(out, "| 1 |") {
		t.Fatalf("not rewritten:\n%s", out)
	}
	if _, again, _ := syncPaper(root, out); len(again) != 0 {
		t.Fatalf("rewritten paper still stale: %v", again)
	}
	if _, _, err := syncPaper(root, strings.Replace(paper, "x/table.md", "y/table.md", 1)); err == nil {
		t.Fatal("mismatched markers not reported")
	}
}
