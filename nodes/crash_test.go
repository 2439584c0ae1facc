package nodes

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// TestMain lets the test binary double as a node process: with
// DIALKV_TEST_NODE_ARGS set it runs `dialkv node` with those arguments
// (space-separated) instead of the tests; with DIALKV_TEST_CONNECT it is
// the connection-holding child of TestTenThousandConns.
func TestMain(m *testing.M) {
	if args := os.Getenv("DIALKV_TEST_NODE_ARGS"); args != "" {
		os.Exit(Main(strings.Fields(args), os.Stdout, os.Stderr))
	}
	if spec := os.Getenv("DIALKV_TEST_CONNECT"); spec != "" {
		os.Exit(connectChild(spec))
	}
	os.Exit(m.Run())
}

// childNode is a node running as a separate process (the test binary
// re-executed).
type childNode struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(t *testing.T, args ...string) *childNode {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "DIALKV_TEST_NODE_ARGS="+strings.Join(args, " "))
	cmd.Stderr = io.Discard
	if os.Getenv("DIALKV_TEST_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case line <- sc.Text():
			default:
			}
		}
	}()
	select {
	case l := <-line:
		i := strings.LastIndex(l, " on ")
		if i < 0 {
			cmd.Process.Kill()
			t.Fatalf("child node said %q", l)
		}
		c := &childNode{cmd: cmd, addr: l[i+4:]}
		t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
		return c
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("child node did not start in 20 s")
	}
	return nil
}

// TestKill9 is the durability test: writers hammer a node running with
// --fsync=always in a child process, the process is killed with SIGKILL,
// restarted on the same data directory, and every acknowledged write must
// be there. The same check run against --engine=memory (which loses
// everything on restart) must report the loss: the test can fail.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	t.Run("pebble-fsync-always", func(t *testing.T) {
		lost, total := kill9(t, "--fsync", "always")
		if lost > 0 {
			t.Fatalf("%d of %d acknowledged writes lost after kill -9", lost, total)
		}
	})
	t.Run("memory-engine-must-lose", func(t *testing.T) {
		lost, total := kill9(t, "--engine", "memory")
		if lost == 0 {
			t.Fatalf("the check found no loss of %d writes on an engine that keeps nothing: it cannot detect loss", total)
		}
		t.Logf("the check detects loss: %d of %d writes missing on the memory engine", lost, total)
	})
}

// kill9 runs the kill -9 scenario and returns how many acknowledged writes
// were lost out of how many.
func kill9(t *testing.T, extra ...string) (lost, total int) {
	dir := t.TempDir()
	args := append([]string{"--id", "n1", "--listen", "127.0.0.1:0", "--data", dir}, extra...)
	child := startChild(t, args...)

	const writers = 8
	var (
		mu       sync.Mutex
		acked    = map[string]string{} // key -> value, acknowledged
		incrAck  atomic.Int64          // acknowledged INCRs of "ctr"
		incrSent atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, child.addr)
			ctx := context.Background()
			for i := 0; !stop.Load(); i++ {
				k, v := fmt.Sprintf("w%d:%d", w, i), fmt.Sprintf("v%d", i)
				var err error
				if i%4 == 3 {
					incrSent.Add(1)
					_, err = c.Call(ctx, noOpts(), cmd("INCR", "ctr"))
					if err == nil {
						incrAck.Add(1)
					}
				} else {
					_, err = c.Execute(ctx, noOpts(), []*gen.Command{cmd("SET", k, v)})
					if err == nil {
						mu.Lock()
						acked[k] = v
						mu.Unlock()
					}
				}
				if err != nil {
					return // the node is gone
				}
			}
		}()
	}
	// Kill once enough writes are acknowledged (slow builds, -race, need
	// longer), mid-stream.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		k := len(acked)
		mu.Unlock()
		if k >= 300 {
			break
		}
	}
	if err := child.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.cmd.Wait()
	stop.Store(true)
	wg.Wait()
	if len(acked) < 300 {
		t.Fatalf("only %d writes were acknowledged before the kill; the test shows nothing", len(acked))
	}

	child = startChild(t, args...)
	c := dial(t, child.addr)
	ctx := context.Background()
	missing := 0
	if strings.Contains(strings.Join(extra, " "), "memory") {
		// Expected to lose; report without failing.
		for k, v := range acked {
			r, err := c.Call(ctx, noOpts(), cmd("GET", k))
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Replies[0].Str) != v {
				missing++
			}
		}
		return missing, len(acked)
	}
	for k, v := range acked {
		r, err := c.Call(ctx, noOpts(), cmd("GET", k))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(r.Replies[0].Str); r.Replies[0].Kind != gen.ReplyKind_BULK || got != v {
			missing++
			if missing < 5 {
				t.Errorf("acknowledged %s=%s, after kill -9 and restart: %v", k, v, r.Replies[0])
			}
		}
	}
	r, err := c.Call(ctx, noOpts(), cmd("GET", "ctr"))
	if err != nil {
		t.Fatal(err)
	}
	var ctr int64
	fmt.Sscan(string(r.Replies[0].Str), &ctr)
	if ctr < incrAck.Load() || ctr > incrSent.Load() {
		t.Errorf("ctr = %d after restart; %d INCRs acknowledged, %d sent", ctr, incrAck.Load(), incrSent.Load())
	}
	t.Logf("%d acknowledged SETs, %d acknowledged INCRs (ctr=%d); %d lost", len(acked), incrAck.Load(), ctr, missing)
	return missing, len(acked)
}
