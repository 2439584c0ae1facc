package core

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestGarbageCommands: every command in the table, with random arguments
// drawn from a pool of tricky tokens, never panics, only returns known
// error codes, and never leaves a record the store cannot read back.
func TestGarbageCommands(t *testing.T) {
	names := CommandNames()
	tokens := []string{"", "k", "s", "l", "h", "z", "x", "0", "1", "-1", "2", "-100", "100",
		"9223372036854775807", "9223372036854775808", "-9223372036854775808", "1.5", "inf", "-inf", "nan",
		"(1", "[a", "(", "[", "+", "-", "\x00", "NX", "XX", "GT", "LT", "CH", "INCR", "GET", "EX", "PX",
		"EXAT", "PXAT", "KEEPTTL", "IFVER", "IFEQ", "LIMIT", "COUNT", "CURSOR", "WITHSCORES", "BYSCORE",
		"BYLEX", "REV", "ON", "HASH", "PREFIX", "FIELD", "TYPE", "string", "number", "EQ", "RANGE", "ix"}
	known := map[Code]bool{CodeErr: true, CodeWrongType: true, CodeConditionFailed: true,
		CodeKeyTooLarge: true, CodeValueTooLarge: true, CodeUnknownCommand: true}
	rapid.Check(t, func(t *rapid.T) {
		s, _ := NewStore(NewMemEngine(), Limits{MaxValueSize: 200})
		now := t0
		for _, c := range []Command{Cmd("SET", "k", "1"), Cmd("SADD", "s", "a"), Cmd("RPUSH", "l", "a", "b"),
			Cmd("HSET", "h", "f", "1"), Cmd("ZADD", "z", "1", "a"),
			Cmd("IDX.CREATE", "ix", "ON", "HASH", "PREFIX", "", "FIELD", "f", "TYPE", "number")} {
			if r := s.Apply(now, c); r.IsError() {
				t.Fatal(render(r))
			}
		}
		for i, n := 0, rapid.IntRange(1, 40).Draw(t, "steps"); i < n; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 1500).Draw(t, "ms")) * time.Millisecond)
			args := make([]string, rapid.IntRange(0, 8).Draw(t, "nargs"))
			for j := range args {
				args[j] = rapid.SampledFrom(tokens).Draw(t, "arg")
			}
			c := Cmd(rapid.SampledFrom(names).Draw(t, "name"), args...)
			var r Reply
			if IsReadOnly(c.Name) {
				// The concurrent read path answers as Apply does (and its
				// guard against writes never fires).
				rr, ra := s.Read(now, c), s.Apply(now, c)
				if render(rr) != render(ra) {
					t.Fatalf("%s: Read %s, Apply %s", c, render(rr), render(ra))
				}
			}
			if rapid.IntRange(0, 4).Draw(t, "txn") == 0 {
				r = s.ApplyTxn(now, Txn{Cmds: []Command{c, Cmd("GET", "k")}})
			} else {
				r = s.Apply(now, c)
			}
			if r.IsError() && !known[r.Err.Code] {
				t.Fatalf("%s: unexpected error %s", c, render(r))
			}
		}
		if _, err := s.Dump(now); err != nil {
			t.Fatalf("Dump after garbage: %v", err)
		}
		if s.Stats().CorruptionsSeen != 0 {
			t.Fatal("corruption seen")
		}
	})
}
