package admin

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/nodes"
)

// cutKey is the key of write i of a cutWriter.
func cutKey(i int) string { return fmt.Sprintf("s%05d", i) }

// cutWriter writes one write at a time, in a known order: write i sets
// cutKey(i) = i in namespace nss[i%len(nss)], through a client that knows
// every node, retried until it is acknowledged; write i+1 starts only then.
// So every write acknowledged before write i started is a write j < i.
type cutWriter struct {
	nss  []string
	cls  []*client.Client
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	sent  []time.Time // first attempt of write i
	acked []time.Time // acknowledgement of write i
	fails int         // attempts that failed (retried)
	err   error       // a write not acknowledged within its 30 s
}

func startCutWriter(t *testing.T, addrs []string, nss []string) *cutWriter {
	t.Helper()
	w := &cutWriter{nss: nss, stop: make(chan struct{}), done: make(chan struct{})}
	for _, ns := range nss {
		c, err := client.New(addrs, client.WithNamespace(ns), client.WithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		w.cls = append(w.cls, c)
	}
	go w.run()
	return w
}

func (w *cutWriter) run() {
	defer close(w.done)
	for i := 0; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		c := w.cls[i%len(w.cls)]
		w.mu.Lock()
		w.sent = append(w.sent, time.Now())
		w.mu.Unlock()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := c.Set(ctx, cutKey(i), []byte(fmt.Sprint(i)))
			cancel()
			if err == nil {
				break
			}
			w.mu.Lock()
			w.fails++
			w.mu.Unlock()
			if time.Now().After(deadline) {
				w.mu.Lock()
				w.err = fmt.Errorf("write %d (%s in %s) not acknowledged within 30 s: %w", i, cutKey(i), w.nss[i%len(w.nss)], err)
				w.mu.Unlock()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		w.mu.Lock()
		w.acked = append(w.acked, time.Now())
		w.mu.Unlock()
	}
}

// waitAcked waits until n writes are acknowledged.
func (w *cutWriter) waitAcked(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		got, err := len(w.acked), w.err
		w.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d writes acknowledged after 60 s", got, n)
		}
	}
}

// halt stops the writer after its current write.
func (w *cutWriter) halt(t *testing.T) {
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatal(w.err)
	}
}

// ackedBefore is the number of writes acknowledged before at (a prefix).
func (w *cutWriter) ackedBefore(at time.Time) int {
	return sort.Search(len(w.acked), func(i int) bool { return w.acked[i].After(at) })
}

// sentAfter is the first write first sent after at.
func (w *cutWriter) sentAfter(at time.Time) int {
	return sort.Search(len(w.sent), func(i int) bool { return w.sent[i].After(at) })
}

// maxAckGap is the longest time between two acknowledgements in [from, to].
func (w *cutWriter) maxAckGap(from, to time.Time) time.Duration {
	var gap time.Duration
	prev := from
	for _, a := range w.acked {
		if a.Before(from) {
			continue
		}
		if a.After(to) {
			return max(gap, a.Sub(prev))
		}
		gap, prev = max(gap, a.Sub(prev)), a
	}
	return gap
}

// cutViolations lists the writes missing although a later one is present:
// write j < i is acknowledged before write i started, so a backup that is
// one cut has j wherever it has i.
func cutViolations(present []bool) []int {
	last := -1
	for i, p := range present {
		if p {
			last = i
		}
	}
	var missing []int
	for j := 0; j < last; j++ {
		if !present[j] {
			missing = append(missing, j)
		}
	}
	return missing
}

// restoredWrites restores the cluster backup at from into a new cluster
// (node directories under root, the raft namespace created and imported)
// and reports which of writes 0..n-1 it holds.
func restoredWrites(t *testing.T, from, root string, nss []string, n int) []bool {
	t.Helper()
	var dirs []string
	for _, id := range []string{"n1", "n2", "n3"} {
		d := filepath.Join(root, id)
		if _, err := Restore(from, id, time.Time{}, d); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, d)
	}
	b := startBackupCluster(t, dirs, nil)
	defer b.stop()
	b.create("r", "raft", b.raftParams())
	var so strings.Builder
	if err := RaftRestore(from, b.adminList(), nil, &so); err != nil {
		t.Fatalf("restore --raft: %v", err)
	}
	var addrs []string
	for i := range b.peers {
		addrs = append(addrs, b.addr(i))
	}
	cls := map[string]*client.Client{}
	for _, ns := range nss {
		c, err := client.New(addrs, client.WithNamespace(ns), client.WithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cls[ns] = c
	}
	present := make([]bool, n)
	for i := range n {
		ns := nss[i%len(nss)]
		// Quorum reads ask every replica (R=3): a write is in the
		// backup if any replica's checkpoint has it.
		ctx, cancel := context.WithTimeout(client.With(context.Background(), client.R(3)), 20*time.Second)
		v, err := cls[ns].Get(ctx, cutKey(i))
		cancel()
		if err != nil {
			t.Fatalf("restored GET %s in %s: %v", cutKey(i), ns, err)
		}
		if v.Found && string(v.Data) != fmt.Sprint(i) {
			t.Fatalf("restored %s in %s = %q, want %d", cutKey(i), ns, v.Data, i)
		}
		present[i] = v.Found
	}
	return present
}

// TestClusterBackupCut: a writer writes one write after the other in a
// known order, spread over a raft namespace (two shards), a quorum and a
// causal namespace (each key on one owner), during two cluster backups
// whose node checkpoints are spread 250 ms apart (as a big node's
// checkpoint would take): the default one under the write fence, and the
// control with --no-fence. Each backup is restored into a new cluster and
// read back. The fenced backup holds a prefix of the writes — none present
// whose predecessor (acknowledged before it started) is missing — that
// includes every write acknowledged before the backup started and none
// started after it returned. The unfenced backup, on the same writes, is
// not a prefix (the test fails if it is: the control would show nothing).
func TestClusterBackupCut(t *testing.T) {
	root := t.TempDir()
	a := startBackupCluster(t, []string{filepath.Join(root, "a1"), filepath.Join(root, "a2"), filepath.Join(root, "a3")}, nil)
	a.create("r", "raft", a.raftParams())
	a.create("q", "quorum", nil)
	a.create("c", "causal", nil)
	nss := []string{"r", "q", "c"}
	adm := map[string]string{"n1": a.admins["n1"], "n2": a.admins["n2"], "n3": a.admins["n3"]}
	var addrs []string
	for i := range a.peers {
		addrs = append(addrs, a.addr(i))
	}
	w := startCutWriter(t, addrs, nss)
	w.waitAcked(t, 30)
	const gap = 250 * time.Millisecond
	spread := func(id string) {
		time.Sleep(map[string]time.Duration{"n1": 0, "n2": gap, "n3": 2 * gap}[id])
	}
	type run struct {
		name       string
		out        string
		start, end time.Time
		m          BackupManifest
	}
	var runs []*run
	for _, noFence := range []bool{false, true} {
		r := &run{name: "fenced", out: filepath.Join(root, "fenced")}
		if noFence {
			r.name, r.out = "no-fence", filepath.Join(root, "nofence")
		}
		w.mu.Lock()
		n0 := len(w.acked)
		w.mu.Unlock()
		r.start = time.Now()
		m, err := BackupWith(adm, r.out, BackupOptions{NoFence: noFence, beforeCheckpoint: spread})
		r.end = time.Now()
		if err != nil {
			t.Fatalf("%s backup: %v", r.name, err)
		}
		if err := checkCluster(m); err != nil {
			t.Fatalf("%s backup: %v", r.name, err)
		}
		r.m = m
		runs = append(runs, r)
		w.waitAcked(t, n0+30)
	}
	w.halt(t)
	n := len(w.sent)
	for _, r := range runs {
		present := restoredWrites(t, r.out, filepath.Join(root, "restore-"+r.name), nss, n)
		count := 0
		for _, p := range present {
			if p {
				count++
			}
		}
		missing := cutViolations(present)
		before, after := w.ackedBefore(r.start), w.sentAfter(r.end)
		t.Logf("%s backup: %d of %d writes present; acknowledged before the backup started: %d, first sent after it returned: write %d; "+
			"missing below a present write: %d %v; backup took %v, longest gap between acknowledgements meanwhile %v; cut %+v",
			r.name, count, n, before, after, len(missing), head(missing, 10), r.end.Sub(r.start).Round(time.Millisecond),
			w.maxAckGap(r.start, r.end).Round(time.Millisecond), r.m.Cut)
		if r.name == "no-fence" {
			if len(missing) == 0 {
				t.Errorf("control: the unfenced backup is a prefix too (%d writes present); this run shows nothing about the fence", count)
			}
			continue
		}
		if len(missing) > 0 {
			t.Errorf("fenced backup is not one cut: writes %v missing although write %d is present (reproduce: go test -count=1 -run TestClusterBackupCut -v ./nodes/admin)", head(missing, 20), lastTrue(present))
		}
		if count < before {
			t.Errorf("fenced backup: %d writes present, but %d were acknowledged before it started", count, before)
		}
		if count > after {
			t.Errorf("fenced backup: %d writes present, but write %d was first sent after it returned", count, after)
		}
		if r.m.Cut == nil || r.m.Cut.Fence == "" || len(r.m.Cut.Nodes) != 3 {
			t.Errorf("fenced backup's manifest has no cut report: %+v", r.m.Cut)
		}
	}
}

func head(xs []int, n int) []int { return xs[:min(n, len(xs))] }

func lastTrue(bs []bool) int {
	for i := len(bs) - 1; i >= 0; i-- {
		if bs[i] {
			return i
		}
	}
	return -1
}

// TestSameRing: a cut whose nodes checkpointed at different ring versions
// is refused.
func TestSameRing(t *testing.T) {
	ms := func(vs ...uint64) map[string]nodes.CheckpointManifest {
		out := map[string]nodes.CheckpointManifest{}
		for i, v := range vs {
			out[fmt.Sprintf("n%d", i+1)] = nodes.CheckpointManifest{RingVersion: v}
		}
		return out
	}
	ids := []string{"n1", "n2", "n3"}
	for _, tt := range []struct {
		name string
		ms   map[string]nodes.CheckpointManifest
		ok   bool
	}{
		{"same", ms(4, 4, 4), true},
		{"outside a cluster", ms(0, 0, 0), true},
		{"one behind", ms(4, 3, 4), false},
		{"last ahead", ms(4, 4, 5), false},
	} {
		if err := sameRing(ids, tt.ms); (err == nil) != tt.ok || (err != nil && !errors.Is(err, nodes.ErrRingChange)) {
			t.Errorf("%s: sameRing = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}
