package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
)

func startNode(t *testing.T) string {
	t.Helper()
	n, err := nodes.Start(nodes.Config{ID: "cli-e2e", Listen: "127.0.0.1:0", DataDir: t.TempDir(), Fsync: core.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return n.Addr()
}

// A script through a real node, in line mode: what a person sees.
func TestEndToEnd(t *testing.T) {
	addr := startNode(t)
	script := []struct{ in, out string }{
		{`PING`, "PONG\n"},
		{`SET greeting "hello world"`, "OK\n"},
		{`GET greeting`, "\"hello world\"\n"},
		{`GET nothing`, "(nil)\n"},
		{`SET bin "\x00\xff\n"`, "OK\n"},
		{`GET bin`, "\"\\x00\\xff\\n\"\n"},
		{`INCR visits`, "(integer) 1\n"},
		{`INCRBYFLOAT f 1.5`, "\"1.5\"\n"},
		{`RPUSH l a b c`, "(integer) 3\n"},
		{`LRANGE l 0 -1`, "1) \"a\"\n2) \"b\"\n3) \"c\"\n"},
		{`LRANGE empty 0 -1`, "(empty array)\n"},
		{`GET l`, "(error) WRONGTYPE Operation against a key holding the wrong kind of value\n"},
		{`HSET user:1 name ada lang go`, "(integer) 2\n"},
		{`HGET user:1 name`, "\"ada\"\n"},
		{`ZADD z 1 one 2 two`, "(integer) 2\n"},
		{`ZRANGE z 0 -1 WITHSCORES`, "1) \"one\"\n2) \"1\"\n3) \"two\"\n4) \"2\"\n"},
		{`MULTI`, "OK\n"},
		{`SET a 1`, "QUEUED\n"},
		{`INCR a`, "QUEUED\n"},
		{`EXEC`, "1) OK\n2) (integer) 2\n"},
		{`WATCH a`, "OK\n"},
		{`SET a 10`, "OK\n"},
		{`MULTI`, "OK\n"},
		{`SET a 20`, "QUEUED\n"},
		{`GET a`, "QUEUED\n"},
		{`EXEC`, "(error) CONDFAILED 0: version of a is 10, want 9\n"},
		{`GET a`, "\"10\"\n"},
		{`MULTI`, "OK\n"},
		{`SET a 30`, "QUEUED\n"},
		{`NOSUCHCMD x`, "(error) UNKNOWN unknown command 'NOSUCHCMD'\n"},
		{`EXEC`, "(error) EXECABORT Transaction discarded because of previous errors.\n"},
		{`GET a`, "\"10\"\n"},
		{`NOSUCHCMD x`, "(error) UNKNOWN unknown command 'NOSUCHCMD'\n"},
		{`PUBLISH news hello`, "(integer) 0\n"},
		{`NAMESPACE CREATE users local`, "OK\n"},
		{`USE users`, "OK\n"},
		{`GET greeting`, "(nil)\n"},
		{`USE ""`, "OK\n"},
		{`GET greeting`, "\"hello world\"\n"},
	}
	var in strings.Builder
	for _, l := range script {
		in.WriteString(l.in + "\n")
	}
	var out, errw bytes.Buffer
	code := Run([]string{"--addr", addr, "--history", ""}, strings.NewReader(in.String()), &out, &errw, dialClient)
	got := out.String()
	var want strings.Builder
	for _, l := range script {
		want.WriteString(l.out)
	}
	if got != want.String() {
		gl, wl := strings.Split(got, "\n"), strings.Split(want.String(), "\n")
		for i := range max(len(gl), len(wl)) {
			g, w := "", ""
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("line %d: got %q, want %q", i+1, g, w)
			}
		}
		t.Logf("stderr: %s", errw.String())
	}
	if code != 0 {
		t.Errorf("exit status %d, want 0 (error replies do not fail without -e)", code)
	}
}

func TestEndToEndOneShotAndPubSub(t *testing.T) {
	addr := startNode(t)
	var out, errw bytes.Buffer
	if code := Run([]string{"--addr", addr, "SET", "k", "two words"}, strings.NewReader(""), &out, &errw, dialClient); code != 0 || out.String() != "OK\n" {
		t.Fatalf("one-shot SET: %d %q %q", code, out.String(), errw.String())
	}
	out.Reset()
	if code := Run([]string{"--addr", addr, "-e", "LPUSH", "k", "x"}, strings.NewReader(""), &out, &errw, dialClient); code != 1 || !strings.HasPrefix(out.String(), "(error) WRONGTYPE") {
		t.Fatalf("one-shot -e LPUSH on a string: %d %q", code, out.String())
	}
	errw.Reset()
	if code := Run([]string{"--addr", "127.0.0.1:1", "GET", "k"}, strings.NewReader(""), &out, &errw, dialClient); code != 1 || !strings.Contains(errw.String(), "Could not connect to dialkv at 127.0.0.1:1") {
		t.Fatalf("unreachable node: %d %q", code, errw.String())
	}

	ctx := context.Background()
	subExec, err := dialClient(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer subExec.Close()
	var subOut syncBuffer
	published := make(chan string, 1)
	s := &session{cfg: Config{Addr: addr, Timeout: 5 * time.Second}, exec: subExec, out: &subOut, errw: &subOut, rl: noPrompt{},
		subCtx: func(ctx context.Context) (context.Context, context.CancelFunc) {
			// Stop once the message has been printed (or after 20 s).
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			go func() {
				for ctx.Err() == nil && !strings.Contains(subOut.String(), "hello") {
					time.Sleep(10 * time.Millisecond)
				}
				cancel()
			}()
			return ctx, cancel
		}}
	pubExec, err := dialClient(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pubExec.Close()
	go func() {
		// Publish until the subscription exists (PUBLISH replies 1).
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			r, err := pubExec.Do(ctx, "", mustCmd("PUBLISH", "news", "hello"))
			if err == nil && r.Int == 1 {
				published <- "ok"
				return
			}
		}
		published <- "never received"
	}()
	s.line(ctx, "SUBSCRIBE news")
	if p := <-published; p != "ok" {
		t.Fatalf("publish: %s", p)
	}
	want := "Reading messages... (press Ctrl-C to quit)\n1) \"subscribe\"\n2) \"news\"\n3) (integer) 1\n1) \"message\"\n2) \"news\"\n3) \"hello\"\n"
	if subOut.String() != want {
		t.Errorf("subscribe output %q, want %q", subOut.String(), want)
	}
}

func mustCmd(name string, args ...string) core.Command { return core.Cmd(name, args...) }
