package nodes

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
)

func TestHelp(t *testing.T) {
	for name, m := range map[string]func([]string, *bytes.Buffer, *bytes.Buffer) int{
		"node": func(a []string, o, e *bytes.Buffer) int { return Main(a, o, e) },
		"demo": func(a []string, o, e *bytes.Buffer) int { return DemoMain(a, o, e) },
	} {
		var out, errb bytes.Buffer
		if code := m([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Usage: dialkv "+name) {
			t.Errorf("dialkv %s --help: exit %d, output %q", name, code, out.String())
		}
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"--id", "x", "--data", t.TempDir(), "--fsync", "sometimes"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "fsync") {
		t.Errorf("bad --fsync: exit %d, %q", code, errb.String())
	}
	if code := Main([]string{"--data", t.TempDir()}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--id is required") {
		t.Errorf("missing --id: exit %d, %q", code, errb.String())
	}
}

// TestGracefulShutdown: SIGTERM stops a node cleanly (exit 0) and, even
// under --fsync=never, what it acknowledged is there after a restart
// (shutdown syncs the engines).
func TestGracefulShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	args := []string{"--id", "n1", "--listen", "127.0.0.1:0", "--data", dir, "--fsync", "never"}
	child := startChild(t, args...)
	c := dial(t, child.addr)
	ctx := context.Background()
	for i := range 100 {
		if _, err := c.Call(ctx, noOpts(), cmd("SET", fmt.Sprint("k", i), fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	child.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- child.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("node exited with %v after SIGTERM", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("node did not stop within 15 s of SIGTERM")
	}
	child = startChild(t, args...)
	c = dial(t, child.addr)
	for i := range 100 {
		r, err := c.Call(ctx, noOpts(), cmd("GET", fmt.Sprint("k", i)))
		if err != nil || string(r.Replies[0].Str) != fmt.Sprint(i) {
			t.Fatalf("k%d after a graceful restart: %v, %v", i, r, err)
		}
	}
}

// TestNodeProcs: the node's GOMAXPROCS (--procs, the environment, one P
// more than the runtime's default under --fsync always; the node passes
// runtime.GOMAXPROCS(0), which honours a cgroup CPU limit, as the default).
func TestNodeProcs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flag   int
		policy core.SyncPolicy
		env    bool
		want   int
	}{
		{"always: one more than the runtime's default", 0, core.SyncAlways, false, 3},
		{"always, GOMAXPROCS set: the runtime's", 0, core.SyncAlways, true, 0},
		{"never: the runtime's", 0, core.SyncNever, false, 0},
		{"interval: the runtime's", 0, core.SyncInterval, false, 0},
		{"--procs wins", 5, core.SyncNever, false, 5},
		{"--procs wins over the environment", 1, core.SyncAlways, true, 1},
	} {
		if got := nodeProcs(tc.flag, tc.policy, tc.env, 2); got != tc.want {
			t.Errorf("%s: nodeProcs = %d, want %d", tc.name, got, tc.want)
		}
	}
}
