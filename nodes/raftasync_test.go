package nodes

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/prometheus/client_golang/prometheus"

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

// TestDeferredWriteAnswer: a raft write started on the event loop that
// succeeded is answered by its deferredWrite itself
// (transport.DeferredAnswer) with the reply Call gives from the frame
// served again (answerDeferred, in the generated processor's "call"
// reply), counted once in the metrics; any other outcome writes and
// counts nothing and is left to Call.
func TestDeferredWriteAnswer(t *testing.T) {
	ctx := context.Background()
	cmd := core.Cmd("SET", "k", "v")
	for _, tc := range []struct {
		name    string
		method  string
		resp    consistency.Response
		err     error
		answers bool
	}{
		{name: "ok", method: "call", resp: consistency.Response{Reply: core.OK()}, answers: true},
		{name: "bulk and token", method: "call", resp: consistency.Response{Reply: core.Bulk([]byte("old")), Token: []byte("t1")}, answers: true},
		{name: "error reply", method: "call", resp: consistency.Response{Reply: core.ErrorReply(core.Errorf(core.CodeErr, "no"))}},
		{name: "timeout", method: "call", err: consistency.ErrTimeout},
		{name: "another method", method: "execute", resp: consistency.Response{Reply: core.OK()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{}
			n.cfg.ID = "n1"
			n.metrics = newMetrics(n)
			h := &handler{n: n}
			ns := &namespace{spec: NamespaceSpec{Name: "r"}}
			done := func() *deferredWrite {
				d := &deferredWrite{start: time.Now(), ns: ns, fence: &n.fence, h: h, c: cmd}
				n.fence.enter()
				d.finish(tc.resp, tc.err)
				return d
			}
			var want []byte
			if tc.answers {
				r, err := h.answerDeferred(done(), cmd)
				if err != nil {
					t.Fatalf("answerDeferred: %v", err)
				}
				want = callReply(t, tc.method, 7, &gen.DialKVCallResult{Success: r})
			}
			before := callsOK(t, n)
			buf := thrift.NewTMemoryBuffer()
			got := done().WriteAnswer(ctx, tc.method, 7, thrift.NewTBinaryProtocolConf(buf, nil))
			if got != tc.answers {
				t.Fatalf("WriteAnswer = %v, want %v", got, tc.answers)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Fatalf("WriteAnswer wrote %x, want %x", buf.Bytes(), want)
			}
			if c := callsOK(t, n) - before; (c == 1) != tc.answers || c > 1 {
				t.Fatalf("WriteAnswer counted %v successful calls; want 1 if it answers, else 0", c)
			}
		})
	}
}

// callReply is the generated processor's reply message: header, result,
// end.
func callReply(t *testing.T, method string, seq int32, r thrift.TStruct) []byte {
	t.Helper()
	ctx := context.Background()
	buf := thrift.NewTMemoryBuffer()
	p := thrift.NewTBinaryProtocolConf(buf, nil)
	if err := p.WriteMessageBegin(ctx, method, thrift.REPLY, seq); err != nil {
		t.Fatal(err)
	}
	if err := r.Write(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteMessageEnd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// callsOK reads dialkv_requests_total{op="call", outcome="ok"} of a node's
// metrics (from a registry of that counter alone: the node's own
// registry's gauges need a running node).
func callsOK(t *testing.T, n *Node) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(n.metrics.requests)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dialkv_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["op"] == "call" && labels["outcome"] == "ok" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
