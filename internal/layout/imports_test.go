package layout

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/dialkv/dialkv"

// allowed maps a folder (longest prefix wins) to the folders of ours its
// packages may depend on, directly or not. A folder may always import its
// own subpackages.
var allowed = map[string][]string{
	"core":             {},
	"consistency":      {"core"},
	"transport":        {"core"},
	"checker":          {"core"},
	"sim":              {"core", "consistency", "checker", "clients/workload"},
	"nodes":            {"core", "consistency", "transport"},
	"clients":          {"core", "transport", "checker"},
	"clients/workload": {"core", "checker"},
	"internal":         {},
}

// forbiddenStd lists standard packages a folder must not import directly.
var forbiddenStd = map[string][]string{
	"sim":  {"net", "net/http"},
	"core": {"net", "net/http", "math/rand"},
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func folderOf(path string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
	best := ""
	for f := range allowed {
		if (rel == f || strings.HasPrefix(rel, f+"/")) && len(f) > len(best) {
			best = f
		}
	}
	return best
}

func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		from := folderOf(p.ImportPath)
		if from == "" { // cmd, experiments: anything goes
			continue
		}
		checked++
		self := module + "/" + from
		for _, d := range p.Deps {
			if !strings.HasPrefix(d, module+"/") || d == self || strings.HasPrefix(d, self+"/") {
				continue
			}
			ok := false
			for _, a := range allowed[from] {
				if folderOf(d) == a || strings.HasPrefix(strings.TrimPrefix(d, module+"/"), a+"/") || strings.TrimPrefix(d, module+"/") == a {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s (folder %s) depends on %s; %s may depend only on %v", p.ImportPath, from, d, from, allowed[from])
			}
		}
		for _, std := range forbiddenStd[from] {
			for _, imp := range p.Imports {
				if imp == std {
					t.Errorf("%s imports %s, which folder %s must not", p.ImportPath, std, from)
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no packages checked: the go list query matched nothing")
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
	} {
		if got := folderOf(tc.path); got != tc.want {
			t.Errorf("folderOf(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
