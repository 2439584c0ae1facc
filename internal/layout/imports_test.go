package layout

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/dialkv/dialkv"

// allowed maps a folder (longest prefix wins) to the folders of ours its
// packages may depend on, directly or not. A folder may always import its
// own subpackages. Folders not listed (cmd, experiments) may import anything.
// internal/freeport (loopback ports for demos and process clusters) is a
// leaf the node and client folders may use.
var allowed = map[string][]string{
	"core":             {},
	"consistency":      {"core"},
	"transport":        {"core"},
	"checker":          {"core"},
	"sim":              {"core", "consistency", "checker", "clients/workload"},
	"nodes":            {"core", "consistency", "transport", "internal/freeport"},
	"clients":          {"core", "transport", "checker", "internal/freeport"},
	"clients/workload": {"core", "checker"},
	"internal":         {},
}

// forbiddenStd lists standard packages a folder must not import directly:
// the simulator never touches a real network, and core never reaches for
// global randomness or the network.
var forbiddenStd = map[string][]string{
	"sim":  {"net", "net/http"},
	"core": {"net", "net/http", "math/rand", "math/rand/v2"},
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// folderOf returns the layout folder that holds a package, "" for folders
// without rules.
func folderOf(path string) string {
	if path != module && !strings.HasPrefix(path, module+"/") {
		return ""
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
	best := ""
	for f := range allowed {
		if (rel == f || strings.HasPrefix(rel, f+"/")) && len(f) > len(best) {
			best = f
		}
	}
	return best
}

// within reports whether path is folder f of ours or below it.
func within(path, f string) bool {
	rel := strings.TrimPrefix(path, module+"/")
	return rel == f || strings.HasPrefix(rel, f+"/")
}

// violations lists every import-rule violation among pkgs.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		from := folderOf(p.ImportPath)
		if from == "" {
			continue
		}
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module+"/") || within(d, from) {
				continue
			}
			ok := false
			for _, a := range allowed[from] {
				if within(d, a) {
					ok = true
				}
			}
			if !ok {
				out = append(out, fmt.Sprintf("%s (folder %s) depends on %s; %s may depend only on %v", p.ImportPath, from, d, from, allowed[from]))
			}
		}
		for _, std := range forbiddenStd[from] {
			for _, imp := range p.Imports {
				if imp == std {
					out = append(out, fmt.Sprintf("%s imports %s, which folder %s must not", p.ImportPath, std, from))
				}
			}
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages: the query is wrong", len(pkgs))
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// TestViolationsCatchesBadImports shows the rule check flags what it exists for.
func TestViolationsCatchesBadImports(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    pkg
		bad  bool
	}{
		{"core imports sim", pkg{ImportPath: module + "/core", Deps: []string{module + "/sim"}}, true},
		{"sim imports nodes", pkg{ImportPath: module + "/sim/x", Deps: []string{module + "/nodes"}}, true},
		{"sim imports net", pkg{ImportPath: module + "/sim", Imports: []string{"net"}}, true},
		{"core imports math/rand", pkg{ImportPath: module + "/core", Imports: []string{"math/rand"}}, true},
		{"workload imports transport", pkg{ImportPath: module + "/clients/workload", Deps: []string{module + "/transport"}}, true},
		{"sim imports workload", pkg{ImportPath: module + "/sim", Deps: []string{module + "/clients/workload", module + "/core"}}, false},
		{"core imports own subpackage", pkg{ImportPath: module + "/core/pebbleengine", Deps: []string{module + "/core"}}, false},
		{"cmd imports anything", pkg{ImportPath: module + "/cmd/dialkv", Deps: []string{module + "/nodes", module + "/sim"}}, false},
		{"nodes imports consistency", pkg{ImportPath: module + "/nodes", Deps: []string{module + "/consistency/raft"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := violations([]pkg{tc.p})
			if tc.bad != (len(got) > 0) {
				t.Errorf("violations = %v, want bad=%v", got, tc.bad)
			}
		})
	}
}

func TestFolderOf(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{module + "/core", "core"},
		{module + "/core/pebbleengine", "core"},
		{module + "/clients/workload", "clients/workload"},
		{module + "/clients/cli", "clients"},
		{module + "/cmd/dialkv", ""},
		{module + "/coreish", ""},
		{"example.com/core", ""},
	} {
		if got := folderOf(tc.path); got != tc.want {
			t.Errorf("folderOf(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
