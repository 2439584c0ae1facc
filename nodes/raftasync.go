package nodes

import (
	"context"
	"sync"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// Raft writes served from the event loop without a worker. A single
// command (call) of a raft namespace that the shard's leader receives is
// proposed on the client transport's event loop (raft.Service.DoAsync)
// instead of being handed to a worker goroutine that proposes it and
// waits: the handler returns transport.ErrDeferred, the loop goes on, and
// the raft Service's completion goroutine, once the write is applied,
// has the transport write its reply: the deferredWrite writes a
// successful answer itself (WriteAnswer, a transport.DeferredAnswer),
// without the transport decoding the request frame again and serving it
// through the processor and Call; any other answer (an error, which the
// generated processor maps to its exception) is Call's, from the frame
// served again (answerDeferred). The reply is written on that goroutine,
// with the replies before it, in one write that does not wait.
// Everything DoAsync does not start (not the leader, reads, other
// commands, batches) goes to a worker as before (transport.ErrNotInline).
// The write is answered only once applied, exactly as on a worker.
// The transport holds the connection until the later of its frame timeout
// and the request's deadline (deadline_ms, up to 60 s) plus a grace
// (deferredWrite.Deadline): DoAsync answers a write not done by its
// deadline with a Timeout, so a write waits on this path as long as on a
// worker.

// asyncDoer is a Service that can start a write without waiting
// (raft.Service).
type asyncDoer interface {
	DoAsync(req consistency.Request, deadline time.Time, done func(consistency.Response, error)) bool
}

// deferredWrite is a raft write started on the event loop: a
// transport.Deferred whose outcome Call answers from once it is done.
type deferredWrite struct {
	start    time.Time  // when Call first saw the request (its latency)
	deadline time.Time  // the request's, as given to DoAsync
	ns       *namespace // (hot-key accounting)
	fence    *writeFence
	h        *handler     // (WriteAnswer)
	c        core.Command // the command (its arguments are the request's own copies)

	mu   sync.Mutex
	done bool
	f    func() // the transport's callback, once registered
	resp consistency.Response
	err  error
}

var _ transport.DeferredAnswer = (*deferredWrite)(nil)

// finish records the write's outcome, leaves the write fence and calls
// the transport's callback (if registered yet: else OnDone calls it).
// Called once, by the raft Service's completion goroutine (or one of its
// own), never by the event loop.
func (d *deferredWrite) finish(resp consistency.Response, err error) {
	d.fence.exit()
	d.mu.Lock()
	d.resp, d.err, d.done = resp, err, true
	f := d.f
	d.mu.Unlock()
	if f != nil {
		f()
	}
}

// OnDone implements transport.Deferred.
func (d *deferredWrite) OnDone(f func()) {
	d.mu.Lock()
	if d.done {
		d.mu.Unlock()
		f()
		return
	}
	d.f = f
	d.mu.Unlock()
}

// Deadline implements transport.Deferred: the deadline DoAsync was given
// (set before Defer, never changed).
func (d *deferredWrite) Deadline() (time.Time, bool) { return d.deadline, true }

// startDeferred starts command c of a raft namespace from the event loop
// and registers it with the transport (transport.Defer); false: nothing
// was done (not a write DoAsync takes, or the write fence is up), the
// caller hands the request to a worker.
func (h *handler) startDeferred(ctx context.Context, o *gen.RequestOptions, ns *namespace, c core.Command, start time.Time) bool {
	a, ok := ns.svc.(asyncDoer)
	// Ordering rule: whether the transport takes a Deferred (an inline
	// request: Defer then succeeds) is checked before DoAsync proposes:
	// once proposed, a write handed to a worker would be proposed again.
	if !ok || core.IsReadOnly(c.Name) || !transport.Inline(ctx) {
		return false
	}
	if !h.n.fence.enter() {
		return false // the worker answers errFenced
	}
	// Ordering rule: the deadline is fixed before DoAsync and Defer, so
	// that the transport's bound on the hold (Deadline) and DoAsync's
	// Timeout are the same instant.
	d := &deferredWrite{start: start, deadline: h.deadline(o), ns: ns, fence: &h.n.fence, h: h, c: c}
	req := h.request(o)
	req.Cmd = &c
	// Ordering rule: Defer is called only once DoAsync accepted the
	// write, and before Call returns; d.finish may run before the
	// transport registers its callback (OnDone then calls it at once).
	if !a.DoAsync(req, d.deadline, d.finish) {
		h.n.fence.exit()
		return false
	}
	if !transport.Defer(ctx, d) {
		// Cannot happen (Inline was checked): the write is proposed and
		// must not go to a worker. Fail loudly; the transport closes the
		// connection and the write finishes unanswered.
		panic("nodes: transport.Defer refused an inline request after DoAsync proposed its write")
	}
	h.n.loopWrites.Add(1)
	return true
}

// answerDeferred is Call's answer to a deferred write that is done, as
// Call answers a write it waited for (h.do).
func (h *handler) answerDeferred(d *deferredWrite, c core.Command) (*gen.ExecuteResponse, error) {
	d.mu.Lock()
	resp, err := d.resp, d.err
	d.mu.Unlock()
	return h.callAnswer(d.ns, c, d.start, resp, answerErr(resp, err))
}

// WriteAnswer implements transport.DeferredAnswer: a write that succeeded
// is answered as Call answers it from the frame served again
// (answerDeferred, then the generated processor's reply to "call"), with
// the same metrics and hot-key accounting; any other outcome is left to
// Call (false, nothing written or counted).
func (d *deferredWrite) WriteAnswer(ctx context.Context, name string, seq int32, oprot thrift.TProtocol) bool {
	d.mu.Lock()
	resp, err := d.resp, d.err
	d.mu.Unlock()
	if name != "call" || answerErr(resp, err) != nil {
		return false
	}
	r, _ := d.h.callAnswer(d.ns, d.c, d.start, resp, nil)
	d.h.n.metrics.observe("call", outcome(nil), d.start)
	// Writes to the transport's reply buffer, which do not fail.
	_ = oprot.WriteMessageBegin(ctx, name, thrift.REPLY, seq)
	_ = (&gen.DialKVCallResult{Success: r}).Write(ctx, oprot)
	_ = oprot.WriteMessageEnd(ctx)
	_ = oprot.Flush(ctx)
	return true
}
