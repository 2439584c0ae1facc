package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
)

// fakeExec is a tiny in-memory server: SET, GET, INCR, LRANGE-ish and errors.
type fakeExec struct {
	data   map[string]string
	n      map[string]int64
	seen   []string
	closed bool
}

func newFake() *fakeExec { return &fakeExec{data: map[string]string{}, n: map[string]int64{}} }

func (f *fakeExec) Do(_ context.Context, ns string, c core.Command) (core.Reply, error) {
	f.seen = append(f.seen, ns+":"+c.String())
	switch c.Name {
	case "SET":
		f.data[ns+"/"+string(c.Args[0])] = string(c.Args[1])
		return core.OK(), nil
	case "GET":
		v, ok := f.data[ns+"/"+string(c.Args[0])]
		if !ok {
			return core.Nil(), nil
		}
		return core.Bulk([]byte(v)), nil
	case "INCR":
		f.n[string(c.Args[0])]++
		return core.Int(f.n[string(c.Args[0])]), nil
	case "LIST":
		return core.Array(core.Bulk([]byte("a")), core.Array(core.Int(1))), nil
	case "WRONG":
		return core.ErrorReply(&core.Error{Code: core.CodeWrongType, Msg: "Operation against a key holding the wrong kind of value"}), nil
	case "TYPED":
		return core.Reply{}, &core.Error{Code: core.CodeConditionFailed, Msg: "version 3"}
	case "DOWN":
		return core.Reply{}, errors.New("connection refused")
	}
	return core.ErrorReply(core.Errorf(core.CodeUnknownCommand, "unknown command '%s'", c.Name)), nil
}

func (f *fakeExec) Close() error { f.closed = true; return nil }

func runWith(t *testing.T, f *fakeExec, stdin string, args ...string) (string, string, int) {
	t.Helper()
	var out, errw bytes.Buffer
	code := Run(append([]string{"--history", ""}, args...), strings.NewReader(stdin), &out, &errw,
		func(context.Context, string, ...client.Option) (Executor, error) { return f, nil })
	return out.String(), errw.String(), code
}

func TestOneShot(t *testing.T) {
	f := newFake()
	for _, tc := range []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"SET", "k", "hello world"}, "OK\n", 0},
		{[]string{"get", "k"}, "\"hello world\"\n", 0},
		{[]string{"GET", "missing"}, "(nil)\n", 0},
		{[]string{"INCR", "n"}, "(integer) 1\n", 0},
		{[]string{"LIST"}, "1) \"a\"\n2) 1) (integer) 1\n", 0},
		{[]string{"WRONG"}, "(error) WRONGTYPE Operation against a key holding the wrong kind of value\n", 0},
		{[]string{"-e", "WRONG"}, "(error) WRONGTYPE Operation against a key holding the wrong kind of value\n", 1},
		{[]string{"TYPED"}, "(error) CONDFAILED version 3\n", 0},
		{[]string{"DOWN"}, "(error) connection refused\n", 1},
		{[]string{"--raw", "GET", "k"}, "hello world\n", 0},
		{[]string{"--namespace", "users", "GET", "k"}, "(nil)\n", 0},
	} {
		out, errOut, code := runWith(t, f, "", tc.args...)
		if out != tc.out || code != tc.code {
			t.Errorf("cli %q: out %q code %d (stderr %q); want %q code %d", tc.args, out, code, errOut, tc.out, tc.code)
		}
	}
	if last := f.seen[len(f.seen)-1]; last != "users:GET k" {
		t.Errorf("--namespace not passed: %q", last)
	}
	if !f.closed {
		t.Error("executor not closed")
	}
}

// Standard input that is not a terminal: one command per line, with
// redis-cli quoting, repeat counts, help and quit.
func TestLines(t *testing.T) {
	f := newFake()
	in := strings.Join([]string{
		`SET k "two words"`,
		``,
		`GET k`,
		`3 INCR n`,
		`SET k "unbalanced`,
		`USE other`,
		`GET k`,
		`USE ""`,
		`help GET`,
		`quit`,
		`GET never-run`,
	}, "\n")
	out, _, code := runWith(t, f, in)
	want := "OK\n\"two words\"\n(integer) 1\n(integer) 2\n(integer) 3\nInvalid argument(s)\nOK\n(nil)\nOK\n\n  GET key\n  summary: Get the value of a key\n  group: string\n\n"
	if out != want {
		t.Errorf("output\n%s\nwant\n%s", out, want)
	}
	if code != 1 { // the invalid line
		t.Errorf("exit %d, want 1 (a line failed)", code)
	}
	if got := strings.Join(f.seen, "|"); !strings.Contains(got, "|other:GET k") {
		t.Errorf("USE other did not switch the namespace: %s", got)
	}
	for _, s := range f.seen {
		if strings.Contains(s, "never-run") {
			t.Error("a command after quit ran")
		}
	}
}

func TestHelp(t *testing.T) {
	var b bytes.Buffer
	writeHelp(&b, nil)
	if !strings.Contains(b.String(), "@string") || !strings.Contains(b.String(), "ZADD") {
		t.Errorf("help lists no groups/commands:\n%s", b.String())
	}
	b.Reset()
	writeHelp(&b, []string{"@list"})
	if !strings.Contains(b.String(), "LPUSH key element [element ...]") || strings.Contains(b.String(), "SADD") {
		t.Errorf("help @list:\n%s", b.String())
	}
	b.Reset()
	writeHelp(&b, []string{"gett"})
	if !strings.Contains(b.String(), "No help for") || !strings.Contains(b.String(), "GET") {
		t.Errorf("help gett:\n%s", b.String())
	}
	// Every documented command has syntax-free summary and a known group.
	groups := map[string]bool{}
	for _, g := range groupOrder {
		groups[g] = true
	}
	seen := map[string]bool{}
	for _, d := range commandDocs() {
		if !groups[d.Group] || d.Summary == "" || seen[d.Name] || d.Name != strings.ToUpper(d.Name) {
			t.Errorf("bad help entry %+v", d)
		}
		seen[d.Name] = true
	}
}

func TestFlagsAndDialErrors(t *testing.T) {
	var out, errw bytes.Buffer
	if code := Run([]string{"--help"}, strings.NewReader(""), &out, &errw, nil); code != 0 || !strings.Contains(errw.String(), "Usage: dialkv cli") {
		t.Errorf("--help: %d %q", code, errw.String())
	}
	errw.Reset()
	code := Run([]string{"--addr", "127.0.0.1:1", "GET", "k"}, strings.NewReader(""), &out, &errw,
		func(context.Context, string, ...client.Option) (Executor, error) {
			return nil, errors.New("connection refused")
		})
	if code != 1 || !strings.Contains(errw.String(), "Could not connect to dialkv at 127.0.0.1:1: connection refused") {
		t.Errorf("dial failure: %d %q", code, errw.String())
	}
	if code := Run([]string{"--timeout", "0s"}, strings.NewReader(""), &out, &errw, nil); code != 2 {
		t.Errorf("--timeout 0s: exit %d", code)
	}
}

func TestCompleter(t *testing.T) {
	got, n := completer{}.Do([]rune("ZPO"), 3)
	var gs []string
	for _, g := range got {
		gs = append(gs, string(g))
	}
	if n != 3 || strings.Join(gs, ",") != "PMIN ,PMAX " { // ZPOPMIN, ZPOPMAX
		t.Errorf("complete zpo: %q %d", got, n)
	}
	if got, _ := (completer{}).Do([]rune("hgetal"), 6); len(got) != 1 || string(got[0]) != "l " {
		t.Errorf("complete hgetal: %q", got)
	}
	if got, _ := (completer{}).Do([]rune("GET k"), 5); got != nil {
		t.Errorf("completed an argument: %q", got)
	}
}
