package checker

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// TestRecorderRoundTrip: concurrent clients record; unfinished operations
// are written as unknown; the file reads back as the same history.
func TestRecorderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	rec := NewRecorder(&buf)
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				op := rec.Invoke(Op{Client: c, F: FPut, Key: "k", Args: []string{"v"}, Invoke: int64(i)})
				switch i % 3 {
				case 0:
					rec.Finish(op, int64(i)+1, OK)
				case 1:
					rec.Finish(op, int64(i)+1, Fail)
				}
				// i%3 == 2: never finished
			}
		}(c)
	}
	wg.Wait()
	mem := rec.Ops()
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	ops, err := ReadHistory(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 200 || len(mem) != 200 {
		t.Fatalf("%d ops read, %d in memory, want 200", len(ops), len(mem))
	}
	counts := map[Outcome]int{}
	for i, op := range ops {
		if op.ID != int64(i) {
			t.Fatalf("op %d has id %d", i, op.ID)
		}
		counts[op.Outcome]++
		if (op.Outcome == Unknown) != (op.Complete == nil) {
			t.Errorf("op %d: outcome %s, complete %v", i, op.Outcome, op.Complete)
		}
	}
	if counts[OK] != 68 || counts[Fail] != 68 || counts[Unknown] != 64 {
		t.Errorf("outcomes %v", counts)
	}
	if err := Validate(ops); err != nil {
		t.Error(err)
	}
}

func TestReadHistoryErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{\"id\":0,\"outcome\":\"ok\",\"complete\":1}\n{bad", "line 2"},
		{`{"id":0,"outcome":"maybe"}`, `outcome "maybe"`},
		{`{"id":0,"outcome":"ok"}`, "needs a complete time"},
	} {
		if _, err := ReadHistory(strings.NewReader(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.want)
		}
	}
	if _, err := ReadReplicas(strings.NewReader("{\"node\":\"n1\",\"data\":{}}\nnope")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("replicas: %v", err)
	}
}
