package checker

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzReadHistory feeds arbitrary bytes to ReadHistory, the parser behind
// `dialkv check --history`. It must never panic; what it accepts must
// survive WriteHistory and parse again to the same bytes (the writer's
// output is a fixed point); and a small history that also passes Validate
// goes through every check, as `dialkv check` would run it, which must not
// panic either.
//
// The seed corpus (plain `go test` runs it) is every history under
// testdata/ plus testdata/fuzz/FuzzReadHistory. Longer runs:
//
//	go test ./checker -run '^$' -fuzz FuzzReadHistory -fuzztime 60s
func FuzzReadHistory(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.jsonl"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) <= 4096 {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"id":0,"client":0,"f":"put","key":"x","args":["a"],"invoke":0,"complete":10,"outcome":"ok"}` + "\n" +
		`{"id":1,"client":1,"f":"get","key":"x","invoke":5,"outcome":"unknown"}`))
	f.Add([]byte(`{"id":0,"client":0,"f":"incr","key":"c","args":["x"],"invoke":0,"complete":1,"outcome":"ok","int":1}`))
	f.Add([]byte(`{"outcome":"ok"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := ReadHistory(bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "checker: history line ") {
				t.Fatalf("error does not name the line: %v", err)
			}
			return
		}
		var once bytes.Buffer
		if err := WriteHistory(&once, ops); err != nil {
			t.Fatalf("WriteHistory of a parsed history: %v", err)
		}
		ops2, err := ReadHistory(bytes.NewReader(once.Bytes()))
		if err != nil {
			t.Fatalf("re-reading WriteHistory's output: %v\n%s", err, once.Bytes())
		}
		if len(ops2) != len(ops) {
			t.Fatalf("round trip changed the number of ops: %d -> %d", len(ops), len(ops2))
		}
		var twice bytes.Buffer
		if err := WriteHistory(&twice, ops2); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(once.Bytes(), twice.Bytes()) {
			t.Fatalf("WriteHistory/ReadHistory is not a fixed point:\n%s\n---\n%s", once.Bytes(), twice.Bytes())
		}
		if err := Validate(ops); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Validate error without ErrMalformed: %v", err)
			}
			return
		}
		if len(ops) > 12 {
			return // keep each input fast; the checks' own tests cover size
		}
		opts := DefaultOptions()
		opts.Checks = AllChecks
		opts.Timeout = 2 * time.Second
		opts.Visualize = 0
		res := Check(ops, nil, opts)
		if len(res.Checks) != len(AllChecks) {
			t.Fatalf("Check ran %d checks; want %d", len(res.Checks), len(AllChecks))
		}
	})
}
