package nodes

import (
	"context"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// TestRaftWritesOnEventLoop: raft writes at the shard's leader are
// proposed from the event loop (raftasync.go) and answered once applied;
// every acknowledged write reads back, also after the leader was stopped
// in the middle of the load (writes in flight at it fail or are answered,
// none is lost).
func TestRaftWritesOnEventLoop(t *testing.T) {
	c := newRaftTestCluster(t, "loop", 3, RaftRebalanceOptions{Off: true})
	for i := range 3 {
		c.start(i, 3)
	}
	const ns = "lw"
	c.createRaft(ns, 3, 3, []int{0, 1, 2}, map[string]string{"snapshot-entries": "100"})
	ctx, cl := c.raftClient(ns, 0, 3, 2*time.Minute, 5*time.Second)
	load := startRaftLoad(ctx, cl, 4)
	time.Sleep(time.Second)
	leader := -1
	for i, cn := range c.nodes {
		svc, _ := nsService(cn.namespace(ns)).(*raft.Service)
		if id, ok := svc.Leader(0); ok && string(id) == c.peers[i].ID {
			leader = i
		}
	}
	var onLoop int64
	for _, cn := range c.nodes {
		onLoop += cn.loopWrites.Load()
	}
	if leader < 0 || onLoop == 0 {
		load.stop()
		t.Fatalf("leader %d, %d writes proposed from the event loop; want a leader and some", leader, onLoop)
	}
	c.stop(leader)
	time.Sleep(time.Second)
	load.stop()
	other := (leader + 1) % 3 // reads through a node still running
	rctx, rc := c.raftClient(ns, other, other+1, time.Minute, 5*time.Second)
	if lost := load.checkAcked(t, rctx, rc, 20, nil); lost > 0 {
		t.Fatalf("%d acknowledged writes lost", lost)
	}
	t.Logf("%d writes proposed from the event loop before the leader stopped; %d acknowledged, %d failed", onLoop, len(load.acked), load.failed.Load())
}

// countingDoer is an asyncDoer that starts every write and counts them.
type countingDoer struct {
	consistency.Service
	started int
}

func (d *countingDoer) DoAsync(consistency.Request, time.Time, func(consistency.Response, error)) bool {
	d.started++
	return true
}

// TestStartDeferredNotInline: a request that is not served on the event
// loop (transport.Defer would refuse it) is not proposed by startDeferred:
// a write proposed and then handed to a worker would be proposed twice.
func TestStartDeferredNotInline(t *testing.T) {
	doer := &countingDoer{}
	h := &handler{n: &Node{}}
	ns := &namespace{svc: doer}
	if h.startDeferred(context.Background(), &gen.RequestOptions{}, ns, core.Cmd("SET", "a", "1"), time.Now()) {
		t.Fatal("startDeferred took a request not served on the event loop")
	}
	if doer.started != 0 || h.n.fence.inflight.Load() != 0 {
		t.Fatalf("%d writes proposed, %d left in the write fence; want none", doer.started, h.n.fence.inflight.Load())
	}
}
