package raftsim

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lni/vfs"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/sim/netmodel"
	"github.com/dialkv/dialkv/sim/simrun"
)

// TestReproposeAfterSnapshot reproduces a write that Dragonboat never
// answers: a follower forwards an INCR to the leader, then hears nothing
// from the other replicas while they commit it and 60 more entries and
// compact their logs (SnapshotEntries 20), so after the heal the follower
// learns the INCR from a snapshot instead of applying it, and Dragonboat
// delivers no result for it. Without re-proposal (repropose off) the write
// waits for its whole deadline and its outcome is unknown; with it, the
// follower proposes the same proposal again, the state machine answers the
// copy with the INCR's kept reply, and the write succeeds with reply 1:
// applied once.
func TestReproposeAfterSnapshot(t *testing.T) {
	for _, tt := range []struct {
		repropose time.Duration
		wantErr   error // nil: reply 1
	}{
		{-1, consistency.ErrTimeout},
		{0, nil},
	} {
		t.Run(fmt.Sprintf("repropose=%v", tt.repropose), func(t *testing.T) {
			QuietLogs()
			synctest.Test(t, func(t *testing.T) { reproposeScenario(t, tt.repropose, tt.wantErr) })
		})
	}
}

func reproposeScenario(t *testing.T, repropose time.Duration, wantErr error) {
	const n = 3
	names := make([]string, n)
	nodes := make([]raft.Node, n)
	for i := range names {
		names[i] = "n" + strconv.Itoa(i+1)
		nodes[i] = raft.Node{ID: consistency.NodeID(names[i]), RaftAddr: names[i], ClientAddr: names[i]}
	}
	lat := netmodel.Constant{D: time.Millisecond}
	links := netmodel.NewNet(n, netmodel.Spread(n, 1, 1, lat, lat))
	net := NewNetwork(1, names, links)
	seedElectionRand(1)
	svcs := make([]*raft.Service, n)
	for i := range svcs {
		if i > 0 {
			time.Sleep(stagger)
		}
		svc, err := raft.New(raft.Config{
			NodeID: nodes[i].ID, Nodes: nodes, Dir: "/" + names[i],
			NodeHostID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i+1),
			RTT:        10 * time.Millisecond, SnapshotEntries: 20, CompactionOverhead: 5,
			TransportFactory: net.Factory(), FS: vfs.Wrap(disk{vfs.NewStrictMem()}, &diskFaults{}),
			LogDBShards: 1, SmallEngine: true, ReproposeAfter: repropose,
		})
		if err != nil {
			t.Fatal(err)
		}
		svcs[i] = svc
		defer svc.Close()
	}
	leader := -1
	for leader < 0 {
		time.Sleep(10 * time.Millisecond)
		for i, s := range svcs {
			if id, ok := s.Leader(0); ok && string(id) == names[i] {
				leader = i
			}
		}
	}
	f := (leader + 1) % n // the follower that proposes
	do := func(ctx context.Context, i int, cmd core.Command) (core.Reply, error) {
		resp, err := svcs[i].Do(ctx, consistency.Request{Cmd: &cmd})
		return resp.Reply, err
	}
	// Once f's Propose is on its way, cut every link into f.
	cut := -1
	net.onPropose = func(from, _ int, nt *netmodel.Net) {
		if from != f || cut >= 0 {
			return
		}
		c := netmodel.Cut{N: n, Blocked: make([]bool, n*n), Desc: "into " + names[f]}
		for i := range n {
			c.Blocked[i*n+f] = i != f
		}
		cut = nt.AddCut(c)
	}
	type result struct {
		r   core.Reply
		err error
		at  time.Duration
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := do(ctx, f, core.Cmd("INCR", "c"))
		done <- result{r, err, time.Since(start)}
	}()
	time.Sleep(50 * time.Millisecond)
	net.mu.Lock()
	cutNow := cut >= 0
	net.mu.Unlock()
	if !cutNow {
		t.Fatal("the follower's proposal was not forwarded")
	}
	ctx := context.Background()
	for k := range 60 {
		if _, err := do(ctx, leader, core.Cmd("SET", "k"+strconv.Itoa(k), "v")); err != nil {
			t.Fatalf("SET through the leader: %v", err)
		}
	}
	if r, err := do(ctx, leader, core.Cmd("GET", "c")); err != nil || string(r.Str) != "1" {
		t.Fatalf("GET c at the leader = %q, %v; want 1 (the INCR committed)", r.Str, err)
	}
	time.Sleep(time.Second)
	net.Links(func(nt *netmodel.Net) { nt.RemoveCut(cut) })
	res := <-done
	t.Logf("INCR at the follower: reply %d, err %v, after %v", res.r.Int, res.err, res.at)
	// The follower's log starts after a snapshot: it never held the INCR's
	// entry (entry 1 or 2: it was proposed right after the election).
	lr, err := svcs[f].NodeHost().GetLogReader(svcs[f].ShardID(0))
	if err != nil {
		t.Fatal(err)
	}
	first, last := lr.GetRange()
	t.Logf("the follower's log: entries %d..%d", first, last)
	if first <= 5 {
		t.Fatalf("the follower's log starts at %d: it did not learn the entries from a snapshot", first)
	}
	if wantErr != nil {
		if !errors.Is(res.err, wantErr) {
			t.Fatalf("without re-proposal: err %v, want %v", res.err, wantErr)
		}
		return
	}
	if res.err != nil || res.r.Kind != core.KindInt || res.r.Int != 1 {
		t.Fatalf("INCR = %+v, %v; want 1", res.r, res.err)
	}
	if r, err := do(ctx, f, core.Cmd("GET", "c")); err != nil || string(r.Str) != "1" {
		t.Fatalf("GET c at the follower = %q, %v; want 1 (applied once)", r.Str, err)
	}
}

// TestReproposeLostProposals: followers forward every write (redirect
// off) and 5% of the forwarded Propose messages are lost. Without
// re-proposal each lost one leaves its write unanswered until the client's
// deadline (outcome unknown); with it none is unknown. A counter workload
// (INCR is not idempotent) with copies proposed every 3 ms, so most copies
// reach the log while the first is still in flight, passes the checks:
// every INCR applied once, copies answered with the kept reply (without
// deduplication this configuration fails linearizability at seeds 1..3).
func TestReproposeLostProposals(t *testing.T) {
	for _, tt := range []struct {
		params      map[string]string
		faults      string
		wantUnknown bool
	}{
		{map[string]string{"redirect": "false", "drop-propose": "0.05", "repropose": "off"}, "none", true},
		{map[string]string{"redirect": "false", "drop-propose": "0.05"}, "none", false},
		{map[string]string{"redirect": "false", "repropose": "3ms"}, "none", false},
	} {
		opts := simrun.Options{Strategy: "raft", Seed: 1, Ops: 500, Workload: "counter",
			Faults: []string{tt.faults}, Params: tt.params}
		out := runOne(t, opts)
		r := out.Result
		if tt.wantUnknown {
			if r.Unknown == 0 {
				t.Errorf("%s: no write left unanswered: the scenario reproduces nothing", opts.Command())
			}
			continue
		}
		if r.Verdict != simrun.Pass || r.Unknown != 0 {
			t.Errorf("%s: %s, %d unknown outcomes, want pass and 0: %v", opts.Command(), r.Verdict, r.Unknown, r.Problems)
		}
	}
}
