package jepsen

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/clients/workload"
)

// upgradeFrom is the older revision the rolling upgrade starts from (the
// main branch at the start of session 3).
const upgradeFrom = "12c28bc"

// oldBinary builds upgradeFrom (git archive of the revision, CGO_ENABLED=0
// go build) into dir; it skips the test where the revision is not in the
// history (a shallow clone) or git is missing.
func oldBinary(t *testing.T, dir string) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("skipping: needs git")
	}
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", upgradeFrom+"^{commit}").CombinedOutput(); err != nil {
		t.Skipf("skipping: revision %s is not in this clone's history (%s)", upgradeFrom, out)
	}
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	arch := exec.Command("sh", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", root, upgradeFrom, src))
	if out, err := arch.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v: %s", upgradeFrom, err, out)
	}
	bin := filepath.Join(dir, "dialkv-"+upgradeFrom)
	build := exec.Command("go", "build", "-o", bin, "./cmd/dialkv")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v: %s", upgradeFrom, err, out)
	}
	return bin
}

// raftLoad writes u<i> = i to a raft namespace one at a time until stop,
// and records the acknowledged keys and the longest time without a
// successful write.
type raftLoad struct {
	mu     sync.Mutex
	acked  []string
	maxGap time.Duration
	fails  int
}

func (l *raftLoad) run(c *client.Client, stop <-chan struct{}) {
	last := time.Now()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		k := fmt.Sprintf("u%05d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Set(ctx, k, []byte(k))
		cancel()
		now := time.Now()
		l.mu.Lock()
		if err == nil {
			l.acked = append(l.acked, k)
			l.maxGap = max(l.maxGap, now.Sub(last))
			last = now
		} else {
			l.fails++
		}
		l.mu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestRollingUpgrade (make soak; DIALKV_UPGRADE=1 runs it alone): three
// processes of the older revision upgradeFrom with a raft namespace (two
// shards) and a quorum namespace, replaced one at a time by the binary
// under test (graceful stop, start of the new binary on the same data)
// while the set workload runs on the quorum namespace and a writer on the
// raft one. The quorum history passes its checks (no acknowledged add
// lost, converged); every acknowledged raft write is read back afterwards;
// the longest time without a successful operation is reported per
// namespace and must stay under 5 s.
func TestRollingUpgrade(t *testing.T) {
	if !soak() && os.Getenv("DIALKV_UPGRADE") == "" {
		t.Skip("skipping: builds an older revision (minutes on a loaded machine); runs with DIALKV_SOAK=1 or DIALKV_UPGRADE=1")
	}
	dir := t.TempDir()
	old := oldBinary(t, dir)
	cl, err := StartProcCluster(Spec{Nodes: 3, Fsync: "always", Binary: old}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var addrs []string
	for _, n := range cl.Nodes() {
		addrs = append(addrs, cl.Addr(n))
	}
	rp := cl.RaftParams()
	rp["shards"] = "2"
	admin, err := client.New(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.CreateNamespace(context.Background(), client.NamespaceSpec{Name: "up", Strategy: "raft", Params: rp}); err != nil {
		t.Fatal(err)
	}
	rc, err := client.New(addrs, client.WithNamespace("up"))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Wait until the raft namespace takes writes on the old binaries.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := rc.Set(ctx, "ready", []byte("1"))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("raft namespace on %s: %v", upgradeFrom, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	cl.SetBinary(testBinary(t))
	load := &raftLoad{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); load.run(rc, stop) }()
	cfg := Config{Strategy: "quorum", Workload: workload.Config{Kind: "jepsen-set", Keys: 5}, Clients: 4,
		Duration: dur(9*time.Second, 2*time.Minute), Faults: []string{FaultRestart}, RoundRobin: true,
		FaultEvery: time.Second, FaultFor: 500 * time.Millisecond, Seed: 9}
	res := runAndReport(t, cl, "process", cfg)
	close(stop)
	<-done
	for _, n := range cl.Nodes() {
		if b := cl.RunningBinary(n); b != testBinary(t) {
			t.Errorf("%s still runs %s after the rolling upgrade", n, b)
		}
	}
	load.mu.Lock()
	acked, gap, fails := append([]string(nil), load.acked...), load.maxGap, load.fails
	load.mu.Unlock()
	t.Logf("rolling upgrade %s -> this build: quorum max gap %v (%d ops); raft %d writes acknowledged, %d failed, max gap %v",
		upgradeFrom, res.MaxGap, res.Ops, len(acked), fails, gap)
	if res.MaxGap > 5*time.Second || gap > 5*time.Second {
		t.Errorf("unavailable too long: quorum %v, raft %v", res.MaxGap, gap)
	}
	missing := 0
	for _, k := range acked {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		v, err := rc.Get(ctx, k)
		cancel()
		if err != nil || !v.Found || string(v.Data) != k {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged raft write %s: %+v %v", k, v, err)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged raft writes not read back", missing, len(acked))
	}
}
