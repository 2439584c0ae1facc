package workload

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/core"
)

func TestValuesUniqueAndOpsWellFormed(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(k[0], func(t *testing.T) {
			g, err := New(Config{Kind: k[0], Keys: 3})
			if err != nil {
				t.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, 2))
			seen := map[string]bool{}
			var ops []checker.Op
			for i := 0; i < 2000; i++ {
				op := g.Next(r, i%4)
				if (op.Cmd == nil) == (op.Txn == nil) {
					t.Fatalf("op %+v needs exactly one of Cmd and Txn", op)
				}
				switch op.Rec.F {
				case checker.FPut, checker.FSAdd:
					v := op.Rec.Args[0]
					if seen[v] {
						t.Fatalf("value %q written twice", v)
					}
					seen[v] = true
				case checker.FCAS:
					v := op.Rec.Args[1]
					if seen[v] {
						t.Fatalf("value %q written twice", v)
					}
					seen[v] = true
				}
				if op.Read != (op.Rec.F == checker.FGet || op.Rec.F == checker.FSMembers || op.Rec.F == checker.FBalances) {
					t.Fatalf("%s: Read=%v", op.Rec.F, op.Read)
				}
				if op.Cmd != nil && op.Read != core.IsReadOnly(op.Cmd.Name) {
					t.Fatalf("%s: Read=%v but core says read-only=%v", op.Cmd.Name, op.Read, core.IsReadOnly(op.Cmd.Name))
				}
				rec := op.Rec
				rec.ID, rec.Outcome, rec.Complete = int64(i), checker.OK, checker.Int64Ptr(int64(i))
				ops = append(ops, rec)
			}
			if err := checker.Validate(ops); err != nil {
				t.Fatal(err)
			}
			if len(g.Final()) == 0 {
				t.Error("no final reads")
			}
		})
	}
}

func TestKeyDistributions(t *testing.T) {
	for _, d := range KeyDists() {
		g, err := New(Config{Kind: "register", Keys: 10, KeyDist: d})
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 4))
		count := map[string]int{}
		for i := 0; i < 10000; i++ {
			op := g.Next(r, 0)
			if !strings.HasPrefix(op.Rec.Key, "r") {
				t.Fatalf("register key %q", op.Rec.Key)
			}
			count[op.Rec.Key]++
		}
		if len(count) > 10 {
			t.Fatalf("%s: %d keys of 10", d, len(count))
		}
		hot := float64(count["r0"]) / 10000
		switch d {
		case "uniform":
			if hot > 0.15 {
				t.Errorf("uniform: r0 has %.2f of the operations", hot)
			}
		case "zipfian", "hotkey":
			if hot < 0.3 {
				t.Errorf("%s: r0 has only %.2f of the operations", d, hot)
			}
		}
	}
	if _, err := New(Config{KeyDist: "pareto"}); err == nil {
		t.Error("unknown distribution accepted")
	}
	if _, err := New(Config{Kind: "ledger"}); err == nil {
		t.Error("unknown workload accepted")
	}
}

// TestCompleteAgainstStore applies generated operations to a real store and
// checks the recorded results.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestCompleteAgainstStore(t *testing.T) {
	st, err := core.NewStore(core.NewMemEngine(), core.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(op Op) core.Reply {
		if op.Cmd != nil {
			return st.Apply(t0, *op.Cmd)
		}
		return st.ApplyTxn(t0, *op.Txn)
	}
	put := cmdOp(checker.FPut, "r0", false, "SET", "v1.1")
	rec := put.Rec
	if o := Complete(&rec, apply(put)); o != checker.OK {
		t.Fatalf("put: %s %s", o, rec.Error)
	}
	get := cmdOp(checker.FGet, "r0", true, "GET")
	rec = get.Rec
	if Complete(&rec, apply(get)); rec.Value == nil || *rec.Value != "v1.1" {
		t.Fatalf("get: %+v", rec)
	}
	missing := cmdOp(checker.FGet, "r9", true, "GET")
	rec = missing.Rec
	if Complete(&rec, apply(missing)); rec.Value != nil {
		t.Fatalf("get of a missing key: %+v", rec)
	}
	g, _ := New(Config{Kind: "register"})
	r := rand.New(rand.NewPCG(1, 1))
	var cas Op
	for cas.Txn == nil {
		cas = g.Next(r, 7)
	}
	cas.Rec.Key = "r0"
	cas.Txn.Conds[0].Key = []byte("r0")
	cas.Txn.Cmds[0].Args[0] = []byte("r0")
	rec = cas.Rec
	if o := Complete(&rec, apply(cas)); o != checker.Fail || !strings.HasPrefix(rec.Error, "CONDFAILED") {
		t.Fatalf("cas with a wrong expected value: %s %q", o, rec.Error)
	}
	incr := cmdOp(checker.FIncr, "c0", false, "INCRBY", "3")
	rec = incr.Rec
	if Complete(&rec, apply(incr)); rec.Int == nil || *rec.Int != 3 {
		t.Fatalf("incr: %+v", rec)
	}
	for _, v := range []string{"b", "a"} {
		a := cmdOp(checker.FSAdd, "s0", false, "SADD", v)
		apply(a)
	}
	sm := cmdOp(checker.FSMembers, "s0", true, "SMEMBERS")
	rec = sm.Rec
	if Complete(&rec, apply(sm)); strings.Join(rec.Values, ",") != "a,b" {
		t.Fatalf("smembers: %+v", rec)
	}
	rec = checker.Op{F: checker.FPut}
	if o := Complete(&rec, core.ErrorReply(&core.Error{Code: "TIMEOUT"})); o != checker.Unknown {
		t.Errorf("TIMEOUT reply gave %s", o)
	}
}

func TestRecordSiblings(t *testing.T) {
	tests := []struct {
		name      string
		rec       checker.Op
		values    []string
		wantValue *string
		wantVals  []string
	}{
		{"siblings", checker.Op{F: checker.FGet, Value: checker.StrPtr("b")}, []string{"b", "a"}, nil, []string{"a", "b"}},
		{"one value", checker.Op{F: checker.FGet, Value: checker.StrPtr("a")}, []string{"a"}, checker.StrPtr("a"), nil},
		{"no values", checker.Op{F: checker.FGet, Value: checker.StrPtr("a")}, nil, checker.StrPtr("a"), nil},
		{"failed get", checker.Op{F: checker.FGet, Error: "TIMEOUT"}, []string{"a", "b"}, nil, nil},
		{"not a get", checker.Op{F: checker.FSMembers, Values: []string{"x"}}, []string{"a", "b"}, nil, []string{"x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var values [][]byte
			for _, v := range tc.values {
				values = append(values, []byte(v))
			}
			rec := tc.rec
			RecordSiblings(&rec, values)
			if (rec.Value == nil) != (tc.wantValue == nil) || (rec.Value != nil && *rec.Value != *tc.wantValue) {
				t.Errorf("value = %v, want %v", rec.Value, tc.wantValue)
			}
			if fmt.Sprint(rec.Values) != fmt.Sprint(tc.wantVals) {
				t.Errorf("values = %q, want %q", rec.Values, tc.wantVals)
			}
		})
	}
}
