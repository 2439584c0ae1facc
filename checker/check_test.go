package checker

import (
	"strings"
	"testing"
	"time"
)

// op is shorthand for hand-written histories in tests: complete < 0 means
// an unknown outcome.
func op(id int64, client int, f, key string, inv, comp int64, args ...string) Op {
	o := Op{ID: id, Client: client, F: f, Key: key, Args: args, Invoke: inv, Outcome: OK}
	if comp < 0 {
		o.Outcome = Unknown
	} else {
		o.Complete = Int64Ptr(comp)
	}
	return o
}

func read(id int64, client int, key string, inv, comp int64, v *string) Op {
	o := op(id, client, FGet, key, inv, comp)
	o.Value = v
	return o
}

func TestLinearizableTimeoutIsUnknown(t *testing.T) {
	ops := genHistory(5, 2000, 20, 8)
	opts := DefaultOptions()
	opts.Checks = []string{CheckLinearizable}
	opts.Timeout = time.Nanosecond
	res := Check(ops, nil, opts)
	c := res.Get(CheckLinearizable)
	if c.Verdict != VerdictUnknown || res.Verdict != VerdictUnknown || res.ExitCode() != 2 {
		t.Fatalf("verdict %s / %s (exit %d): %s; want unknown (exit 2)", c.Verdict, res.Verdict, res.ExitCode(), c.Summary)
	}
	if !strings.Contains(c.Summary, "timed out") {
		t.Errorf("summary %q does not say it timed out", c.Summary)
	}
}

func TestUnknownOutcomes(t *testing.T) {
	a, b := StrPtr("a"), StrPtr("b")
	cases := []struct {
		name string
		ops  []Op
		want Verdict
	}{
		// an unknown put may never happen...
		{"unknown put never seen", []Op{op(0, 0, FPut, "x", 0, 10, "a"), op(1, 1, FPut, "x", 20, -1, "b"), read(2, 2, "x", 30, 40, a)}, VerdictOK},
		// ...or happen long after its invocation
		{"unknown put seen late", []Op{op(0, 0, FPut, "x", 0, 10, "a"), op(1, 1, FPut, "x", 20, -1, "b"), read(2, 2, "x", 30, 40, a), read(3, 2, "x", 50, 60, b)}, VerdictOK},
		// but not before it was invoked
		{"unknown put seen before invoke", []Op{read(0, 2, "x", 0, 10, b), op(1, 1, FPut, "x", 20, -1, "b")}, VerdictViolation},
		// and once seen it cannot be unseen
		{"unknown put seen then lost", []Op{op(0, 0, FPut, "x", 0, 10, "a"), op(1, 1, FPut, "x", 20, -1, "b"), read(2, 2, "x", 30, 40, b), read(3, 2, "x", 50, 60, a)}, VerdictViolation},
		// a failed put certainly did not happen
		{"failed put seen", []Op{op(0, 0, FPut, "x", 0, 10, "a"), func() Op { o := op(1, 1, FPut, "x", 20, 25, "b"); o.Outcome = Fail; return o }(), read(2, 2, "x", 30, 40, b)}, VerdictViolation},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.Checks = []string{CheckLinearizable}
			if c := Check(tc.ops, nil, opts).Get(CheckLinearizable); c.Verdict != tc.want {
				t.Errorf("%s (%s), want %s", c.Verdict, c.Summary, tc.want)
			}
		})
	}
}

func TestStalenessMeasures(t *testing.T) {
	a := StrPtr("a")
	ops := []Op{
		op(0, 0, FPut, "x", 0, 10, "a"),
		op(1, 0, FPut, "x", 20, 30, "b"),
		op(2, 0, FPut, "x", 40, 50, "c"),
		read(3, 1, "x", 60, 70, a), // 2 writes behind, superseded at 30: 30 ns
		read(4, 1, "x", 5, 8, nil), // initial, concurrent with put a: fresh
		read(5, 2, "x", 12, 18, a), // fresh
	}
	for _, versioned := range []bool{false, true} {
		in := append([]Op(nil), ops...)
		if versioned {
			for i := 0; i < 3; i++ {
				in[i].Version = uint64(i + 1)
			}
		}
		opts := DefaultOptions()
		opts.Checks = []string{CheckStaleness}
		opts.BoundStaleness, opts.MaxStaleVersions = true, 1
		c := Check(in, nil, opts).Get(CheckStaleness)
		st := c.Staleness
		if st.Reads != 3 || st.StaleReads != 1 || st.Versions.Max != 2 || st.TimeNs.Max != 30 {
			t.Errorf("versioned=%v: %+v", versioned, st)
		}
		if c.Verdict != VerdictViolation || len(c.Anomalies) != 1 || c.Anomalies[0].Ops[len(c.Anomalies[0].Ops)-1].ID != 3 {
			t.Errorf("versioned=%v: bound 1: %s %v", versioned, c.Verdict, c.Anomalies)
		}
	}
}

func TestConvergenceFirstKey(t *testing.T) {
	reps := []ReplicaState{
		{Node: "n1", Data: map[string]string{"a": "1", "c": "3", "d": "4"}},
		{Node: "n2", Data: map[string]string{"a": "1", "c": "x", "b": "2"}},
	}
	c := Check(nil, reps, Options{Checks: []string{CheckConvergence}}).Get(CheckConvergence)
	if c.Verdict != VerdictViolation || c.Counts["anomalies"] != 3 || c.Anomalies[0].Key != "b" {
		t.Fatalf("%s %v", c.Summary, c.Anomalies)
	}
	if !strings.Contains(c.Anomalies[0].Message, "n1=(absent)") || !strings.Contains(c.Anomalies[1].Message, `n2="x"`) {
		t.Errorf("messages lack each replica's value: %v", c.Anomalies)
	}
	same := []ReplicaState{reps[0], {Node: "n3", Data: reps[0].Data}}
	if c := Check(nil, same, Options{Checks: []string{CheckConvergence}}).Get(CheckConvergence); c.Verdict != VerdictOK {
		t.Errorf("equal replicas: %s", c.Summary)
	}
}

func TestParseChecks(t *testing.T) {
	if got, err := ParseChecks("session, linearizable,session"); err != nil || strings.Join(got, ",") != "session,linearizable" {
		t.Errorf("got %v %v", got, err)
	}
	if got, _ := ParseChecks("all"); len(got) != len(AllChecks) {
		t.Errorf("all: %v", got)
	}
	for _, bad := range []string{"", "bogus", "session,bogus"} {
		if _, err := ParseChecks(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestSessionVersionedOrder: with versions, the store's order is used even
// against real time, and writes-follow-reads on one key is caught.
func TestSessionVersionedOrder(t *testing.T) {
	a := StrPtr("a")
	w := func(id int64, c int, v string, inv, comp int64, ver uint64) Op {
		o := op(id, c, FPut, "x", inv, comp, v)
		o.Version = ver
		return o
	}
	r := read(1, 1, "x", 20, 30, a)
	r.Version = 5
	ops := []Op{w(0, 0, "a", 0, 10, 5), r, w(2, 1, "b", 40, 50, 3)} // client 1 read a (v5) then wrote b with v3
	c := Check(ops, nil, Options{Checks: []string{CheckSession}}).Get(CheckSession)
	if c.Counts["anomaly:writes-follow-reads"] != 1 {
		t.Errorf("want one writes-follow-reads: %s %v", c.Summary, c.Anomalies)
	}
}

// TestSiblings: a get that returned several values (quorum siblings) is not
// linearizable, is not attributed to one write by the other checks, and
// its values must each have been written.
func TestSiblings(t *testing.T) {
	sib := func(id int64, vals ...string) Op {
		o := op(id, 2, FGet, "x", 30, 40)
		o.Values = vals
		return o
	}
	base := []Op{op(0, 0, FPut, "x", 0, 10, "a"), op(1, 1, FPut, "x", 0, 10, "b")}
	res := Check(append(base, sib(2, "a", "b")), nil, Options{Checks: AllChecks})
	if c := res.Get(CheckLinearizable); c.Verdict != VerdictViolation {
		t.Errorf("linearizable: %s", c.Summary)
	}
	for _, name := range []string{CheckSession, CheckCausal, CheckDurability, CheckStaleness} {
		if c := res.Get(name); c.Verdict == VerdictViolation {
			t.Errorf("%s: %s %v", name, c.Summary, c.Anomalies)
		}
	}
	if c := Check(append(base, sib(2, "a", "z")), nil, Options{Checks: []string{CheckDurability}}).Get(CheckDurability); c.Counts["anomaly:thin-air-read"] != 1 {
		t.Errorf("durability: %s", c.Summary)
	}
	// a single sibling is an ordinary value
	if res := Check(append(base, sib(2, "b")), nil, Options{Checks: AllChecks}); res.Verdict != VerdictOK {
		t.Errorf("single sibling: %s", res.Verdict)
	}
}

// TestUnobservedUnknownWritesPruned: many unknown puts nobody observed do
// not blow up the search, and pruning them hides no violation.
func TestUnobservedUnknownWritesPruned(t *testing.T) {
	var ops []Op
	ops = append(ops, op(0, 0, FPut, "x", 0, 10, "a"))
	for i := 1; i <= 40; i++ {
		ops = append(ops, op(int64(i), 100+i, FPut, "x", int64(20+i), -1, "u"+itoa(uint64(i))))
	}
	for i := 0; i < 100; i++ {
		ops = append(ops, read(int64(100+i), 1, "x", int64(100+10*i), int64(105+10*i), StrPtr("a")))
	}
	opts := Options{Checks: []string{CheckLinearizable}, Timeout: 20 * time.Second}
	c := Check(ops, nil, opts).Get(CheckLinearizable)
	if c.Verdict != VerdictOK || c.Counts["unknown_writes_pruned"] != 40 {
		t.Fatalf("%s: %s %v", c.Verdict, c.Summary, c.Counts)
	}
	// the same with a stale read at the end: still caught
	ops = append(ops, op(300, 2, FPut, "x", 2000, 2010, "b"), read(301, 1, "x", 2020, 2030, StrPtr("a")))
	if c := Check(ops, nil, opts).Get(CheckLinearizable); c.Verdict != VerdictViolation {
		t.Fatalf("stale read hidden: %s", c.Summary)
	}
	// a CONDFAILED cas(a→c) while x = a is explained only by an unknown put:
	// one of them is kept for it
	base := append([]Op(nil), ops[:41]...) // put a, 40 unknown puts invoked at 21..60
	base = append(base, op(303, 2, FPut, "x", 70, 80, "b"), read(304, 1, "x", 90, 95, StrPtr("b")))
	cas := op(302, 3, FCAS, "x", 50, 60, "a", "c")
	cas.Outcome, cas.Error = Fail, "CONDFAILED"
	c = Check(append(append([]Op(nil), base...), cas), nil, opts).Get(CheckLinearizable)
	if c.Counts["unknown_writes_pruned"] != 39 || c.Verdict != VerdictOK {
		t.Fatalf("with CONDFAILED: %s %v", c.Summary, c.Counts)
	}
	// sets: an unknown sadd of an element never read is pruned
	sets, _ := loadTestdata(t, "valid-set.jsonl")
	if c := Check(sets, nil, opts).Get(CheckLinearizable); c.Verdict != VerdictOK || c.Counts["unknown_writes_pruned"] != 1 {
		t.Fatalf("valid-set: %s %v", c.Summary, c.Counts)
	}
	// but not if no unknown put was invoked before the cas returned
	early := op(302, 3, FCAS, "x", 12, 15, "a", "c")
	early.Outcome, early.Error = Fail, "CONDFAILED"
	if c := Check(append(append([]Op(nil), base...), early), nil, opts).Get(CheckLinearizable); c.Verdict != VerdictViolation {
		t.Fatalf("early CONDFAILED: %s %v", c.Summary, c.Counts)
	}
}

// TestPerReplicaVersionsUntrusted: versions that are per-replica counters
// (shared by two writes, or disagreeing with the reads) are not used to
// order writes, so they cause no false session anomaly.
func TestPerReplicaVersionsUntrusted(t *testing.T) {
	w := func(id int64, c int, v string, inv, comp int64, ver uint64) Op {
		o := op(id, c, FPut, "x", inv, comp, v)
		o.Version = ver
		return o
	}
	r := read(2, 1, "x", 40, 50, StrPtr("b"))
	r.Version = 1 // replica n2 counted b as its first write
	// a then b, in real time; replica counters gave them versions 1 and 1
	ops := []Op{w(0, 0, "a", 0, 10, 1), w(1, 1, "b", 20, 30, 1), r}
	res := Check(ops, nil, Options{Checks: []string{CheckSession, CheckStaleness}, BoundStaleness: true})
	c := res.Get(CheckSession)
	if c.Verdict != VerdictOK || c.Counts["keys_versions_untrusted"] != 1 || c.Counts["keys_versioned"] != 0 {
		t.Errorf("session: %s %v", c.Summary, c.Counts)
	}
	if c := res.Get(CheckStaleness); c.Verdict != VerdictOK {
		t.Errorf("staleness: %s", c.Summary)
	}
	// distinct versions that the reads agree with are trusted
	r.Version = 2
	ops = []Op{w(0, 0, "a", 0, 10, 1), w(1, 1, "b", 20, 30, 2), r}
	if c := Check(ops, nil, Options{Checks: []string{CheckSession}}).Get(CheckSession); c.Counts["keys_versioned"] != 1 {
		t.Errorf("consistent versions not trusted: %v", c.Counts)
	}
}

// TestNoRealTimeOrder: with real-time order off, a last-writer-wins
// outcome that contradicts real time is not a session anomaly, while
// anomalies that need no write order (reading the initial value after a
// write was seen) are still caught.
func TestNoRealTimeOrder(t *testing.T) {
	ops, _ := loadTestdata(t, "read-your-writes.jsonl") // c1 writes b after a completed, then reads a
	on := Check(ops, nil, Options{Checks: []string{CheckSession}})
	off := Check(ops, nil, Options{Checks: []string{CheckSession}, NoRealTimeOrder: true})
	if on.Verdict != VerdictViolation || off.Verdict != VerdictOK {
		t.Errorf("read-your-writes: real time on %s, off %s; want violation, ok", on.Verdict, off.Verdict)
	}
	ops, _ = loadTestdata(t, "monotonic-writes.jsonl") // reads the initial value after seeing a later write
	if c := Check(ops, nil, Options{Checks: []string{CheckSession}, NoRealTimeOrder: true}).Get(CheckSession); c.Counts["anomaly:monotonic-writes"] != 1 {
		t.Errorf("monotonic-writes without real time: %s", c.Summary)
	}
}

// TestHardKeysDoNotStarveOthers: keys Porcupine cannot decide in time are
// unknown, but they do not keep the other keys from being checked, so a
// violation elsewhere is still found.
func TestHardKeysDoNotStarveOthers(t *testing.T) {
	var ops []Op
	id := int64(0)
	for _, key := range []string{"a1", "a2"} {
		// 30 concurrent increments of unknown outcome, then an impossible read
		for i := 0; i < 30; i++ {
			o := op(id, int(id), FIncr, key, int64(i), -1, "1")
			ops, id = append(ops, o), id+1
		}
		ops, id = append(ops, read(id, 999, key, 100, 110, StrPtr("1000"))), id+1
	}
	ops = append(ops, op(id, 1000, FPut, "z", 0, 10, "a"), op(id+1, 1000, FPut, "z", 20, 30, "b"), read(id+2, 1001, "z", 40, 50, StrPtr("a")))
	res := Check(ops, nil, Options{Checks: []string{CheckLinearizable}, Timeout: 2 * time.Second})
	c := res.Get(CheckLinearizable)
	if c.Verdict != VerdictViolation || c.Anomalies[0].Key != "z" {
		t.Fatalf("%s: %s", c.Verdict, c.Summary)
	}
	if c.Counts["keys_unknown"] != 2 {
		t.Errorf("keys_unknown = %d, want the 2 hard keys", c.Counts["keys_unknown"])
	}
}

// TestSetMembersAnyBytes: the linearizability model's sets hold members of
// any bytes — commas, quotes, the empty string, NUL — as the history does.
// (The model once joined quoted members with commas and split on them,
// which turned a member with a comma into two mangled ones and flagged
// linearizable histories.)
//
//	go test -run TestSetMembersAnyBytes ./checker
func TestSetMembersAnyBytes(t *testing.T) {
	for _, m := range [][2]string{{"a,b", "c"}, {`x","y`, "z"}, {"", "e"}, {"a\x00b", "a"}, {"é,", "ü"}, {"v1.1", "v2.1"}} {
		smembers := func(id, inv, comp int64, vals ...string) Op {
			o := op(id, 1, FSMembers, "s", inv, comp)
			o.Values = vals
			return o
		}
		sorted := func(v ...string) []string { return dedupSorted(sortedCopy(v)) }
		for _, tc := range []struct {
			name string
			ops  []Op
			want Verdict
		}{
			{"add, add, read both", []Op{op(1, 0, FSAdd, "s", 0, 1, m[0]), op(2, 0, FSAdd, "s", 2, 3, m[1]),
				smembers(3, 4, 5, sorted(m[0], m[1])...)}, VerdictOK},
			{"add, add, remove, read", []Op{op(1, 0, FSAdd, "s", 0, 1, m[0]), op(2, 0, FSAdd, "s", 2, 3, m[1]),
				op(3, 0, FSRem, "s", 4, 5, m[0]), smembers(4, 6, 7, m[1])}, VerdictOK},
			{"add, add, read one: lost add", []Op{op(1, 0, FSAdd, "s", 0, 1, m[0]), op(2, 0, FSAdd, "s", 2, 3, m[1]),
				smembers(3, 4, 5, m[0])}, VerdictViolation},
			{"remove, read removed", []Op{op(1, 0, FSAdd, "s", 0, 1, m[0]), op(2, 0, FSRem, "s", 2, 3, m[0]),
				smembers(3, 4, 5, m[0])}, VerdictViolation},
		} {
			opts := DefaultOptions()
			opts.Checks = []string{CheckLinearizable}
			c := Check(tc.ops, nil, opts).Get(CheckLinearizable)
			if c.Verdict != tc.want {
				t.Errorf("members %q, %s: %s (%s), want %s", m, tc.name, c.Verdict, c.Summary, tc.want)
			}
		}
	}
}
