package nodes

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// FuzzParsePeers: the --peers parser never panics, and what it accepts
// round-trips through FormatPeers with unique, non-empty IDs and
// addresses. Longer runs:
//
//	go test ./nodes -run '^$' -fuzz FuzzParsePeers -fuzztime 60s
func FuzzParsePeers(f *testing.F) {
	f.Add("n1=127.0.0.1:7379@127.0.0.1:7380,n2=127.0.0.1:7389@127.0.0.1:7390")
	f.Add("n1=a@b, ,n1=c@d")
	f.Add("=@,x=@y,a=b@")
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePeers(s)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, p := range ps {
			if p.ID == "" || p.Client == "" || p.Peer == "" || seen[p.ID] {
				t.Fatalf("ParsePeers(%q) accepted %+v", s, ps)
			}
			seen[p.ID] = true
		}
		again, err := ParsePeers(FormatPeers(ps))
		if err != nil || (len(ps) > 0 && !reflect.DeepEqual(again, ps)) {
			t.Fatalf("ParsePeers(%q) = %+v does not round-trip: %+v, %v", s, ps, again, err)
		}
	})
}

// FuzzParseCatalog: a damaged catalog.json never panics the node at start;
// it is an error, or namespaces whose names are all valid (they become
// directory names) and that encode back to a catalog that parses the same.
//
//	go test ./nodes -run '^$' -fuzz FuzzParseCatalog -fuzztime 60s
func FuzzParseCatalog(f *testing.F) {
	f.Add([]byte(`{"version":1,"namespaces":[{"name":"default","strategy":"local"},{"name":"kv","strategy":"quorum","params":{"n":"3"}}]}`))
	f.Add([]byte(`{"version":1,"namespaces":[{"name":"../../etc","strategy":"local"}]}`))
	f.Add([]byte(`{"namespaces":[{"name":"a","params":{"x":null}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		specs, err := parseCatalog(b, "catalog.json")
		if err != nil {
			if !strings.Contains(err.Error(), "catalog") {
				t.Fatalf("error does not name the catalog: %v", err)
			}
			return
		}
		for _, s := range specs {
			if validNamespace(s.Name) != nil || strings.ContainsAny(s.Name, "/\\") {
				t.Fatalf("accepted namespace name %q", s.Name)
			}
		}
		out, err := json.Marshal(catalogDoc{Version: 1, Namespaces: specs})
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseCatalog(out, "catalog.json")
		if err != nil || len(again) != len(specs) {
			t.Fatalf("re-encoded catalog: %v, %d specs (had %d)", err, len(again), len(specs))
		}
	})
}
