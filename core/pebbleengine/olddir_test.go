package pebbleengine

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
)

// TestOpensSession5DataDir opens testdata/store-session5, a Pebble data
// directory written by build 6f1ff55 (before the version counter carried a
// checksum: its counter is 8 bytes, 0x04) with SET a 1, SET b 2, SET a 3,
// SADD s x y, DEL b, SET c 4. It must open, read back, number the next new
// key above the stored counter, and store the counter checksummed from then
// on (reopened again).
//
// Reproduce: go test ./core/pebbleengine -run '^TestOpensSession5DataDir$' -count=1
func TestOpensSession5DataDir(t *testing.T) {
	const repro = "reproduce: go test ./core/pebbleengine -run '^TestOpensSession5DataDir$' -count=1"
	dir := filepath.Join(t.TempDir(), "pebble")
	if err := os.CopyFS(dir, os.DirFS("testdata/store-session5")); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	open := func() (*Engine, *core.Store) {
		t.Helper()
		e, err := Open(dir, Options{Sync: core.SyncAlways})
		if err != nil {
			t.Fatalf("open: %v\n%s", err, repro)
		}
		s, err := core.NewStore(e, core.Limits{})
		if err != nil {
			e.Close()
			t.Fatalf("NewStore over the session-5 directory: %v\n%s", err, repro)
		}
		return e, s
	}
	e, s := open()
	if raw, err := e.Get([]byte("mcounter")); err != nil || len(raw) != 8 {
		t.Fatalf("the fixture's counter is %x, %v; want the 8-byte legacy form\n%s", raw, err, repro)
	}
	cases := []struct {
		cmd  core.Command
		want string
	}{
		{core.Cmd("GET", "a"), "3"},
		{core.Cmd("EXISTS", "b"), "0"},
		{core.Cmd("SISMEMBER", "s", "y"), "1"},
		{core.Cmd("VERSION", "c"), "4"},
		{core.Cmd("SET", "d", "5"), "OK"},
		{core.Cmd("VERSION", "d"), "5"}, // above the stored counter (4)
	}
	for _, c := range cases {
		if got := replyText(s.Apply(now, c.cmd)); got != c.want {
			t.Fatalf("%s replied %s, want %s\n%s", c.cmd, got, c.want, repro)
		}
	}
	if raw, err := e.Get([]byte("mcounter")); err != nil || len(raw) != 12 {
		t.Fatalf("after a write the counter is %x, %v; want the 12-byte checksummed form\n%s", raw, err, repro)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, s = open()
	defer e.Close()
	for _, c := range []struct {
		cmd  core.Command
		want string
	}{{core.Cmd("SET", "f", "6"), "OK"}, {core.Cmd("VERSION", "f"), "6"}, {core.Cmd("GET", "d"), "5"}} {
		if got := replyText(s.Apply(now, c.cmd)); got != c.want {
			t.Fatalf("after reopening, %s replied %s, want %s\n%s", c.cmd, got, c.want, repro)
		}
	}
}

func replyText(r core.Reply) string {
	switch {
	case r.Err != nil:
		return r.Err.Error()
	case r.Kind == core.KindInt:
		return strconv.FormatInt(r.Int, 10)
	}
	return string(r.Str)
}
