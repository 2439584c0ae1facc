package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// TestWriteFence: the fence's states — a raised fence refuses writes and
// counts them, raising waits for the writes in flight, another id is
// refused, lowering reports how long it held, a lease that ends lowers it
// (and a later lower says it lapsed), a drain that does not finish lowers
// it again.
func TestWriteFence(t *testing.T) {
	n := &Node{log: slog.New(slog.DiscardHandler)}
	if !n.fence.enter() {
		t.Fatal("a lowered fence refused a write")
	}
	// One write in flight: raising waits for it.
	raised := make(chan FenceStatus, 1)
	go func() {
		st, err := n.RaiseFence("f1", time.Minute)
		if err != nil {
			t.Error(err)
		}
		raised <- st
	}()
	for !n.fence.raised.Load() {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-raised:
		t.Fatal("raise returned with a write in flight")
	case <-time.After(50 * time.Millisecond):
	}
	n.fence.exit()
	st := <-raised
	if st.Drain < 50*time.Millisecond {
		t.Errorf("drain %v, want at least the 50 ms the write stayed in flight", st.Drain)
	}
	for range 3 {
		if n.fence.enter() {
			t.Fatal("a raised fence admitted a write")
		}
	}
	if _, err := n.RaiseFence("f2", time.Minute); !errors.Is(err, ErrFenceBusy) {
		t.Errorf("raise of another fence: %v, want ErrFenceBusy", err)
	}
	if _, err := n.RaiseFence("f1", time.Minute); err != nil {
		t.Errorf("raise of the same fence again: %v", err)
	}
	if _, err := n.LowerFence("f2"); !errors.Is(err, ErrFenceNotRaised) {
		t.Errorf("lower of a fence not raised: %v", err)
	}
	st, err := n.LowerFence("f1")
	if err != nil || st.Refused != 3 || st.Held <= 0 {
		t.Errorf("lower = %+v, %v; want 3 refused and a positive held time", st, err)
	}
	if !n.fence.enter() {
		t.Fatal("a lowered fence refused a write")
	}
	n.fence.exit()

	// A lease that ends lowers the fence.
	if _, err := n.RaiseFence("f3", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); n.fence.raised.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fence outlived its lease by 10 s")
		}
	}
	if _, err := n.LowerFence("f3"); !errors.Is(err, ErrFenceNotRaised) || !strings.Contains(err.Error(), "lapsed") {
		t.Errorf("lower after the lease: %v, want a lapse", err)
	}

	// A write that stays in flight past the lease: raising fails, the
	// fence is lowered.
	n.fence.enter()
	if _, err := n.RaiseFence("f4", 30*time.Millisecond); err == nil || n.fence.raised.Load() {
		t.Errorf("raise with a stuck write: %v, raised %v; want an error and the fence lowered", err, n.fence.raised.Load())
	}
	n.fence.exit()

	for _, id := range []string{"", "../x", "a b", string(make([]byte, 65))} {
		if _, err := n.RaiseFence(id, time.Second); err == nil {
			t.Errorf("RaiseFence(%q) accepted", id)
			n.LowerFence(id)
		}
	}
}

// TestWriteFenceRace: writers entering while the fence is raised either
// are refused or are waited for — none is admitted after raise returned.
func TestWriteFenceRace(t *testing.T) {
	var f writeFence
	var admittedLate int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	done := false
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if f.enter() {
					mu.Lock()
					if done {
						admittedLate++
					}
					mu.Unlock()
					f.exit()
				}
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := f.raise("r", time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	done = true
	mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if admittedLate > 0 {
		t.Errorf("%d writes admitted after the fence was raised and drained", admittedLate)
	}
	if f.refused.Load() == 0 {
		t.Error("no write was refused: the writers did not run while the fence was up")
	}
}

// TestWriteFenceAPI: a node whose fence is raised answers writes (SET,
// a batch with a write, a transaction) UNAVAILABLE with a retry-after
// hint and serves reads; once lowered, writes go through.
func TestWriteFenceAPI(t *testing.T) {
	n := startNode(t, Config{})
	c := dial(t, n.Addr())
	ctx := context.Background()
	o := gen.NewRequestOptions()
	if _, err := c.Call(ctx, o, cmd("SET", "k", "1")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.RaiseFence("api", time.Minute); err != nil {
		t.Fatal(err)
	}
	var ua *gen.Unavailable
	if _, err := c.Call(ctx, o, cmd("SET", "k", "2")); !errors.As(err, &ua) || ua.RetryAfterMs <= 0 {
		t.Errorf("SET under the fence: %v, want UNAVAILABLE with a retry-after", err)
	}
	if _, err := c.Execute(ctx, o, []*gen.Command{cmd("GET", "k"), cmd("INCR", "n")}); !errors.As(err, &ua) {
		t.Errorf("batch with a write under the fence: %v, want UNAVAILABLE", err)
	}
	if _, err := c.Transaction(ctx, o, nil, []*gen.Command{cmd("SET", "k", "3")}); !errors.As(err, &ua) {
		t.Errorf("transaction under the fence: %v, want UNAVAILABLE", err)
	}
	r, err := c.Call(ctx, o, cmd("GET", "k"))
	if err != nil || string(r.Replies[0].Str) != "1" {
		t.Errorf("GET under the fence = %+v, %v; want 1", r, err)
	}
	if _, err := c.Execute(ctx, o, []*gen.Command{cmd("GET", "k"), cmd("EXISTS", "k")}); err != nil {
		t.Errorf("read-only batch under the fence: %v", err)
	}
	st, err := n.LowerFence("api")
	if err != nil || st.Refused != 3 {
		t.Errorf("lower = %+v, %v; want 3 refused", st, err)
	}
	if _, err := c.Call(ctx, o, cmd("SET", "k", "4")); err != nil {
		t.Errorf("SET after the fence: %v", err)
	}
}

// TestCheckpointFencedRingChange: a checkpoint under the fence is refused
// while the node's ring is changing (its handoff moves data the fence does
// not stop) and records the ring version otherwise.
func TestCheckpointFencedRingChange(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2")
	cn := tc.nodes[0]
	if _, err := cn.RaiseFence("ring", time.Minute); err != nil {
		t.Fatal(err)
	}
	m, err := cn.CheckpointFenced("ring")
	if err != nil || m.RingVersion != 1 {
		t.Fatalf("checkpoint on a stable ring: version %d, %v; want 1, nil", m.RingVersion, err)
	}
	os.RemoveAll(cn.snapshotDir("ring"))
	if _, err := cn.c.setMembership(Membership{Version: 2, Phase: PhaseJoint, Members: tc.peers, Prev: tc.peers}); err != nil {
		t.Fatal(err)
	}
	if _, err := cn.CheckpointFenced("ring"); !errors.Is(err, ErrRingChange) {
		t.Errorf("checkpoint during a ring change: %v, want ErrRingChange", err)
	}
	if _, err := os.Stat(cn.snapshotDir("ring")); err == nil {
		t.Error("a refused checkpoint left its directory")
	}
	if _, err := cn.c.setMembership(Membership{Version: 3, Phase: PhaseStable, Members: tc.peers}); err != nil {
		t.Fatal(err)
	}
	if m, err := cn.CheckpointFenced("ring"); err != nil || m.RingVersion != 3 {
		t.Errorf("checkpoint once the change is done: version %d, %v; want 3, nil", m.RingVersion, err)
	}
	if _, err := cn.LowerFence("ring"); err != nil {
		t.Error(err)
	}
}

// TestCheckpointFencedHandoff: a quorum hint handed off to its owner while
// the fence is raised fails the holder's checkpoint (the write could be in
// neither checkpoint), and a checkpoint with no hint moved passes.
func TestCheckpointFencedHandoff(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3", "n4")
	tc.createAt(0, "kv", "quorum", map[string]string{"n": "3", "read_repair": "off", "hint_interval": "100ms", "aae_interval": "1h", "timeout": "500ms"})
	tc.waitNamespace("kv")
	tc.stop(1)
	// W=3 with n2 down: the first writes time out and make n1 suspect
	// n2; then sloppy quorum takes a substitute, which keeps a hint.
	for i := range 20 {
		for deadline := time.Now().Add(10 * time.Second); ; {
			_, err := tc.call(0, clusterOp{ns: "kv", w: 3}, "SET", fmt.Sprintf("k%d", i), "v")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("SET (W=3) with n2 down: %v", err)
			}
		}
	}
	holder := -1
	for deadline := time.Now().Add(10 * time.Second); holder < 0; time.Sleep(20 * time.Millisecond) {
		for _, i := range []int{0, 2, 3} {
			if tc.nodes[i].replicaHints() > 0 {
				holder = i
			}
		}
		if holder < 0 && time.Now().After(deadline) {
			t.Fatal("no node holds a hint for the stopped n2")
		}
	}
	cn := tc.nodes[holder]
	if _, err := cn.RaiseFence("hh", time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := cn.CheckpointFenced("hh"); err != nil {
		t.Fatalf("checkpoint with the hints still held: %v", err)
	}
	os.RemoveAll(cn.snapshotDir("hh"))
	h0 := cn.replicaHints()
	tc.start(1)
	for deadline := time.Now().Add(20 * time.Second); cn.replicaHints() >= h0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the hints (%d) were not handed off to the restarted n2 within 20 s", h0)
		}
	}
	if _, err := cn.CheckpointFenced("hh"); !errors.Is(err, ErrHandoff) {
		t.Errorf("checkpoint after a handoff under the fence: %v, want ErrHandoff", err)
	}
	if _, err := cn.LowerFence("hh"); err != nil {
		t.Error(err)
	}
}
