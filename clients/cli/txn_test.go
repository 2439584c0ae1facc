package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
)

// versioned is a fake node with versions, transactions and pub/sub.
type versioned struct {
	fakeExec
	ver  map[string]uint64
	msgs []Message
	subs int
}

func newVersioned() *versioned {
	return &versioned{fakeExec: *newFake(), ver: map[string]uint64{}}
}

func (v *versioned) Do(ctx context.Context, ns string, c core.Command) (core.Reply, error) {
	switch c.Name {
	case "VERSION":
		return core.Int(int64(v.ver[string(c.Args[0])])), nil
	case "SET":
		v.ver[string(c.Args[0])]++
	}
	return v.fakeExec.Do(ctx, ns, c)
}

func (v *versioned) Txn(ctx context.Context, ns string, conds []core.Condition, cmds []core.Command) (core.Reply, error) {
	for _, c := range conds {
		if v.ver[string(c.Key)] != c.Version {
			return core.ErrorReply(&core.Error{Code: core.CodeConditionFailed, Msg: "version of " + string(c.Key) + " changed", Version: v.ver[string(c.Key)]}), nil
		}
	}
	var rs []core.Reply
	for _, c := range cmds {
		r, _ := v.Do(ctx, ns, c)
		rs = append(rs, r)
	}
	return core.Array(rs...), nil
}

func (v *versioned) Subscribe(ctx context.Context, ns string, channels, patterns []string) (Subscription, error) {
	v.subs++
	return &fakeSub{v: v}, nil
}

type fakeSub struct {
	v      *versioned
	closed bool
}

func (f *fakeSub) Poll(ctx context.Context, max int, wait time.Duration) ([]Message, error) {
	if len(f.v.msgs) > 0 {
		m := f.v.msgs
		f.v.msgs = nil
		return m, nil
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(10 * time.Millisecond):
		return nil, nil
	}
}

func (f *fakeSub) Close(context.Context) error { f.closed = true; f.v.subs--; return nil }

func TestMultiExecWatch(t *testing.T) {
	v := newVersioned()
	var out bytes.Buffer
	s := &session{cfg: Config{Addr: "a", Timeout: time.Second}, exec: v, out: &out, errw: &out, rl: noPrompt{}}
	ctx := context.Background()
	for _, line := range []string{
		"EXEC",
		"MULTI", "MULTI", "SET a 1", "INCR n", "EXEC",
		"WATCH a", "MULTI", "SET a 2", "EXEC", // a unchanged since WATCH: applies
		"WATCH a", "SET a 3", "MULTI", "SET a 4", "EXEC", // a changed: fails, nothing applied
		"GET a",
		"MULTI", "SET b 1", "DISCARD", "GET b",
		"MULTI", "WATCH a", "DISCARD",
	} {
		s.line(ctx, line)
	}
	want := strings.Join([]string{
		"(error) ERR EXEC without MULTI",
		"OK", "(error) ERR MULTI calls can not be nested", "QUEUED", "QUEUED", "1) OK", "2) (integer) 1",
		"OK", "OK", "QUEUED", "1) OK",
		"OK", "OK", "OK", "QUEUED", "(error) CONDFAILED version of a changed",
		`"3"`,
		"OK", "QUEUED", "OK", "(nil)",
		"OK", "(error) ERR WATCH inside MULTI is not allowed", "OK",
	}, "\n") + "\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

type recPrompt struct{ last string }

func (r *recPrompt) SetPrompt(p string) { r.last = p }

func TestPromptFollowsState(t *testing.T) {
	v := newVersioned()
	var out bytes.Buffer
	rp := &recPrompt{}
	s := &session{cfg: Config{Addr: "h:1", Timeout: time.Second}, exec: v, out: &out, errw: &out, rl: rp}
	ctx := context.Background()
	for _, step := range []struct{ line, prompt string }{
		{"MULTI", "h:1(TX)> "}, {"USE ns", "h:1[ns](TX)> "}, {"EXEC", "h:1[ns]> "}, {`USE ""`, "h:1> "},
	} {
		s.line(ctx, step.line)
		if rp.last != step.prompt {
			t.Errorf("after %s: prompt %q, want %q", step.line, rp.last, step.prompt)
		}
	}
}

func TestSubscribe(t *testing.T) {
	v := newVersioned()
	v.msgs = []Message{{Channel: "news", Payload: []byte("hello")}, {Channel: "news.eu", Pattern: "news.*", Payload: []byte("hi")}}
	var out bytes.Buffer
	s := &session{cfg: Config{Addr: "a", Timeout: time.Second}, exec: v, out: &out, errw: &out, rl: noPrompt{},
		subCtx: func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 100*time.Millisecond)
		}}
	if st := s.line(context.Background(), "SUBSCRIBE news sport"); st != stOK {
		t.Errorf("status %v", st)
	}
	want := `Reading messages... (press Ctrl-C to quit)
1) "subscribe"
2) "news"
3) (integer) 1
1) "subscribe"
2) "sport"
3) (integer) 2
1) "message"
2) "news"
3) "hello"
1) "pmessage"
2) "news.*"
3) "news.eu"
4) "hi"
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	if v.subs != 0 {
		t.Error("the subscription was not closed after the loop ended")
	}
}
