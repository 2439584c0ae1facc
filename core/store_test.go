package core

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestTxnAllOrNothing(t *testing.T) {
	s := newTestStore(t)
	s.Apply(t0, Cmd("SET", "a", "1"))
	s.Apply(t0, Cmd("SADD", "s", "x"))

	ok := s.ApplyTxn(t0, Txn{
		Conds: []Condition{{Key: []byte("a"), Kind: CondVersion, Version: 1}, {Key: []byte("b"), Kind: CondAbsent}},
		Cmds:  []Command{Cmd("INCR", "a"), Cmd("SET", "b", "x"), Cmd("GET", "b"), Cmd("INCR", "a")},
	})
	if got, want := render(ok), `[(integer) 2 OK "x" (integer) 3]`; got != want {
		t.Fatalf("txn reply %s, want %s", got, want)
	}
	before, _ := s.Dump(t0)

	failed := s.ApplyTxn(t0, Txn{
		Conds: []Condition{{Key: []byte("b"), Kind: CondExists}, {Key: []byte("a"), Kind: CondVersion, Version: 2}},
		Cmds:  []Command{Cmd("DEL", "a")},
	})
	if failed.Err == nil || failed.Err.Code != CodeConditionFailed || failed.Err.Condition != "1: version of a is 3, want 2" || failed.Version != 3 {
		t.Fatalf("failed condition reply %+v %+v", failed, failed.Err)
	}
	// A command error aborts the whole transaction.
	aborted := s.ApplyTxn(t0, Txn{Cmds: []Command{Cmd("DEL", "a"), Cmd("INCR", "s")}})
	if aborted.Err == nil || aborted.Err.Code != CodeWrongType {
		t.Fatalf("aborted txn reply %s", render(aborted))
	}
	after, _ := s.Dump(t0)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("failed transactions changed the state:\n%v\n%v", before, after)
	}
}

func TestExpireStep(t *testing.T) {
	s := newTestStore(t)
	for i, k := range []string{"a", "b", "c"} {
		s.Apply(t0, Cmd("SET", k, "v", "PX", string(rune('1'+i))+"000"))
	}
	s.Apply(t0, Cmd("SET", "keep", "v"))
	if n, err := s.ExpireStep(t0.Add(1500*time.Millisecond), 10); err != nil || n != 1 {
		t.Fatalf("ExpireStep = %d, %v; want 1", n, err)
	}
	if n, err := s.ExpireStep(t0.Add(10*time.Second), 1); err != nil || n != 1 {
		t.Fatalf("ExpireStep max 1 = %d, %v; want 1", n, err)
	}
	if n, err := s.ExpireStep(t0.Add(10*time.Second), 10); err != nil || n != 1 {
		t.Fatalf("ExpireStep = %d, %v; want 1", n, err)
	}
	if st := s.Stats(); st.Keys != 1 || st.Expired != 3 {
		t.Fatalf("stats %+v, want 1 key and 3 expired", st)
	}
	d, _ := s.Dump(t0.Add(10 * time.Second))
	if len(d) != 1 || d["keep"] != `string "v"` {
		t.Fatalf("dump %v", d)
	}
	// Only the data key and the version counter remain: no expiry entries.
	if n := s.Engine().(*MemEngine).Len(); n != 2 {
		t.Fatalf("engine holds %d keys, want 2", n)
	}
}

func TestCorruptionSurfaces(t *testing.T) {
	e := NewMemEngine()
	s, _ := NewStore(e, Limits{})
	s.Apply(t0, Cmd("SET", "k", "hello"))
	raw, err := e.Get(dataKey([]byte("k")))
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x10
		b := e.NewBatch()
		b.Set(dataKey([]byte("k")), bad)
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		r := s.Apply(t0, Cmd("GET", "k"))
		if r.Err == nil || r.Err.Code != CodeCorruption {
			t.Fatalf("flipping byte %d: GET replied %s, want CORRUPTION", i, render(r))
		}
	}
	if s.Stats().CorruptionsSeen != int64(len(raw)) {
		t.Fatalf("CorruptionsSeen %d, want %d", s.Stats().CorruptionsSeen, len(raw))
	}
	// Every other path that reads the record reports it too.
	for _, c := range []Command{Cmd("EXISTS", "k"), Cmd("SET", "k", "x"), Cmd("DEL", "k"), Cmd("SCAN.PREFIX", "", ""), Cmd("APPEND", "k", "x")} {
		if r := s.Apply(t0, c); r.Err == nil || r.Err.Code != CodeCorruption {
			t.Fatalf("%s on a corrupted record replied %s, want CORRUPTION", c, render(r))
		}
	}
	if _, err := s.Dump(t0); !errors.Is(err, ErrCorruption) {
		t.Fatalf("Dump of a corrupted record: %v", err)
	}
	// A record moved under another key fails too (the key is checksummed).
	s.Apply(t0, Cmd("SET", "a", "1"))
	good, _ := e.Get(dataKey([]byte("a")))
	b := e.NewBatch()
	b.Set(dataKey([]byte("b")), good)
	b.Commit(false)
	if r := s.Apply(t0, Cmd("GET", "b")); r.Err == nil || r.Err.Code != CodeCorruption {
		t.Fatalf("GET of a record stored under the wrong key replied %s", render(r))
	}
}

func TestSyncedClone(t *testing.T) {
	e := NewMemEngine()
	s, _ := NewStore(e, Limits{})
	s.Apply(t0, Cmd("SET", "a", "1"))
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Apply(t0, Cmd("SET", "b", "2"))
	s2, err := NewStore(e.SyncedClone(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := s2.Dump(t0)
	if !reflect.DeepEqual(d, map[string]string{"a": `string "1"`}) {
		t.Fatalf("crash clone dump %v, want only a", d)
	}
	s.SetSyncCommits(true)
	s.Apply(t0, Cmd("SET", "c", "3"))
	s3, _ := NewStore(e.SyncedClone(), Limits{})
	if d, _ := s3.Dump(t0); len(d) != 3 {
		t.Fatalf("after a synced commit the clone holds %v, want a, b and c", d)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := newTestStore(t)
	s.Apply(t0, Cmd("SET", "a", "1", "EX", "100"))
	s.Apply(t0, Cmd("SADD", "s", "x", "y"))
	var buf bytes.Buffer
	if err := s.SaveSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	s2 := newTestStore(t)
	s2.Apply(t0, Cmd("SET", "junk", "1"))
	if err := s2.RestoreSnapshot(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	d1, _ := s.Dump(t0)
	d2, _ := s2.Dump(t0)
	if !reflect.DeepEqual(d1, d2) {
		t.Fatalf("restored %v, want %v", d2, d1)
	}
	if got := render(s2.Apply(t0, Cmd("TTL", "a"))); got != "(integer) 100" {
		t.Fatalf("TTL after restore %s", got)
	}
	if s2.Stats().Keys != 2 {
		t.Fatalf("keys after restore %d", s2.Stats().Keys)
	}
	// Versions continue after restore.
	s2.Apply(t0, Cmd("SET", "n", "1"))
	if got := render(s2.Apply(t0, Cmd("VERSION", "n"))); got != "(integer) 3" {
		t.Fatalf("version after restore %s, want 3", got)
	}
	bad := bytes.Clone(buf.Bytes())
	bad[len(bad)/2] ^= 1
	if err := s2.RestoreSnapshot(bytes.NewReader(bad)); err == nil {
		t.Fatal("restoring a damaged snapshot succeeded")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	cmds := []Command{Cmd("SET", "k", "v", "EX", "1"), {Name: "GET", Args: [][]byte{{}}}, {Name: "PING"}}
	for _, c := range cmds {
		got, err := DecodeCommand(EncodeCommand(c))
		if err != nil || got.String() != c.String() {
			t.Fatalf("command %s round trip: %s, %v", c, got, err)
		}
	}
	txn := Txn{Conds: []Condition{{Key: []byte("a"), Kind: CondValue, Value: []byte("x")}, {Key: []byte("b"), Kind: CondVersion, Version: 7}}, Cmds: cmds}
	gt, err := DecodeTxn(EncodeTxn(txn))
	if err != nil || !reflect.DeepEqual(EncodeTxn(gt), EncodeTxn(txn)) || len(gt.Conds) != 2 || gt.Conds[1].Version != 7 {
		t.Fatalf("txn round trip: %+v, %v", gt, err)
	}
	replies := []Reply{OK(), Nil(), Int(-5), Float(1.5), Bulk([]byte("x")), Array(Int(1), Array()), condFailed(3, "version of k is 3, want 2")}
	for _, r := range replies {
		got, err := DecodeReply(EncodeReply(r))
		if err != nil || render(got) != render(r) || got.Version != r.Version {
			t.Fatalf("reply %s round trip: %s, %v", render(r), render(got), err)
		}
	}
	for _, garbage := range [][]byte{nil, {0xC1}, {0xC1, 5, 'a'}, {0xC1, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		if _, err := DecodeCommand(garbage); err == nil {
			t.Fatalf("DecodeCommand(%x) succeeded", garbage)
		}
	}
}

// TestAppendCommandKeys checks AppendCommandKeys against CommandKeys,
// KnownCommand and IsReadOnly for every command with 0-5 arguments, an
// unknown one and a lower-case name, and that it appends to dst.
func TestAppendCommandKeys(t *testing.T) {
	names := append(CommandNames(), "NOPE", "get")
	for _, name := range names {
		for n := range 6 {
			c := Command{Name: name}
			for i := range n {
				c.Args = append(c.Args, []byte{'a' + byte(i)})
			}
			dst := [][]byte{[]byte("x")}
			keys, known, ro := AppendCommandKeys(dst, c)
			want := append([][]byte{[]byte("x")}, CommandKeys(c)...)
			if !reflect.DeepEqual(keys, want) || known != KnownCommand(name) || ro != IsReadOnly(name) {
				t.Errorf("AppendCommandKeys(%s) = %q, %v, %v; want %q, %v, %v",
					c, keys, known, ro, want, KnownCommand(name), IsReadOnly(name))
			}
		}
	}
}

func TestTableQueries(t *testing.T) {
	if !KnownCommand("get") || KnownCommand("NOPE") || !IsReadOnly("GET") || IsReadOnly("SET") || IsReadOnly("NOPE") {
		t.Fatal("KnownCommand/IsReadOnly disagree with the table")
	}
	tests := []struct {
		c    Command
		want []string
	}{
		{Cmd("GET", "k"), []string{"k"}},
		{Cmd("MSET", "a", "1", "b", "2"), []string{"a", "b"}},
		{Cmd("DEL", "a", "b", "c"), []string{"a", "b", "c"}},
		{Cmd("NOPE", "a"), nil},
	}
	for _, tc := range tests {
		var got []string
		for _, k := range CommandKeys(tc.c) {
			got = append(got, string(k))
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("CommandKeys(%s) = %v, want %v", tc.c, got, tc.want)
		}
	}
}
