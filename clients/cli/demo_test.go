package cli

import (
	"bytes"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dialkv/dialkv/nodes"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// What `make run` shows a person works: the demo (three nodes, a raft
// namespace) prints `cli` commands, the write at n1 and the read at n3 work
// as printed, and Ctrl-C stops the demo cleanly.
func TestDemoPrintsWorkingCLICommand(t *testing.T) {
	// Keep SIGINT from killing the test binary whatever the timing.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGINT)
	defer signal.Stop(guard)

	var out, errw syncBuffer
	done := make(chan int, 1)
	go func() { done <- nodes.DemoMain([]string{"--listen", "127.0.0.1:0", "--metrics", ""}, &out, &errw) }()
	re := regexp.MustCompile(`(?m)^\s+(\S+) cli --addr (\S+)((?: --namespace \S+)?) SET greeting hello`)
	reGet := regexp.MustCompile(`(?m)^\s+(\S+) cli --addr (\S+)((?: --namespace \S+)?) GET greeting`)
	var m []string
	for deadline := time.Now().Add(20 * time.Second); m == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("demo printed no cli command:\n%s\n%s", out.String(), errw.String())
		}
		select {
		case code := <-done:
			t.Fatalf("demo exited %d:\n%s\n%s", code, out.String(), errw.String())
		case <-time.After(20 * time.Millisecond):
		}
		m = re.FindStringSubmatch(out.String())
	}
	if !strings.Contains(out.String(), "Ctrl-C") {
		t.Errorf("demo does not say how to stop it:\n%s", out.String())
	}
	var cliOut, cliErr bytes.Buffer
	args := append([]string{"--addr", m[2]}, strings.Fields(m[3])...)
	if code := Run(append(args, "SET", "greeting", "hello"), strings.NewReader(""), &cliOut, &cliErr, dialClient); code != 0 || cliOut.String() != "OK\n" {
		t.Fatalf("the printed command: exit %d, %q %q", code, cliOut.String(), cliErr.String())
	}
	if g := reGet.FindStringSubmatch(out.String()); g != nil {
		cliOut.Reset()
		args := append([]string{"--addr", g[2]}, strings.Fields(g[3])...)
		if code := Run(append(args, "GET", "greeting"), strings.NewReader(""), &cliOut, &cliErr, dialClient); code != 0 || cliOut.String() != "\"hello\"\n" {
			t.Fatalf("the printed GET: exit %d, %q %q", code, cliOut.String(), cliErr.String())
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("demo exited %d after Ctrl-C: %s", code, errw.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not stop on SIGINT")
	}
}
