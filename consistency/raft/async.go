package raft

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Writes started without waiting (DoAsync). A node's client transport
// serves a request on its event loop, which must not block; a raft write
// otherwise goes to a worker goroutine that proposes it and waits for its
// result (Do). DoAsync proposes it on the caller's goroutine and returns;
// the result is delivered by one completion goroutine per shard, which
// waits for the proposals' results in the order they were proposed (the
// order the leader applies them in) and calls each one's done. A write
// so costs no hand-off to a worker and no goroutine parked per request;
// the completion goroutine wakes about once per applied batch.
//
// Only the common case is started this way: a single-shard write
// (no transaction, no admin command) on the shard's leader, proposals not
// batched, reproposing on (reproposeAfter > 0: the completion goroutine
// hands a write without a result to a goroutine of its own after it, so
// one stuck write holds up its shard's later writes at most that long), no
// simulator setting (TxnStagger) and no deliberate bug. Every
// other request, and a write whose Propose fails (not in the log: nothing
// happened), is left to Do (DoAsync returns false). Once proposed, the
// write's outcome is decided as Do decides it (writeResult): a write
// answered by the state machine with a NOTAPPLIED, DUPLICATE or
// TXNCONFLICT reply, a dropped proposal, and a proposal with no result
// after reproposeAfter are finished by a goroutine of their own running
// Do's code (proposeFrom, retryConflict), so the completion goroutine
// waits for one write's result at most reproposeAfter. A write is answered only once
// applied, as in Do: the durability and linearizability of a write do not
// depend on the path.

// asyncWrite is one write started by DoAsync.
type asyncWrite struct {
	req      consistency.Request
	sh       int
	shardID  uint64
	data     []byte
	rs       *dragonboat.RequestState
	deadline time.Time
	since    time.Time // when it was proposed
	done     func(consistency.Response, error)
}

// asyncState is the writes started by DoAsync and not finished, one
// queue (and completion goroutine) per shard.
type asyncState struct {
	mu     sync.Mutex
	queues map[int]*asyncQueue // by shard; never removed
	slow   atomic.Int64        // writes handed to asyncSlow (tests)
}

// asyncQueue is one shard's writes started by DoAsync, in the order they
// were proposed. Its fields are under asyncState.mu.
type asyncQueue struct {
	queue   []*asyncWrite
	running bool          // a completion goroutine is running
	wake    chan struct{} // capacity 1: the queue is not empty
}

// DoAsync starts req, a write, without waiting (it takes no lock it could
// wait for) and reports whether it did:
// done is then called exactly once with Do's answer, by another goroutine
// (never by DoAsync's caller), once the write was applied or failed. False:
// nothing was done (not the common case, see above, or the proposal did
// not enter the log) and done will not be called; use Do. deadline bounds
// the write as a context deadline bounds Do.
func (s *Service) DoAsync(req consistency.Request, deadline time.Time, done func(consistency.Response, error)) bool {
	if s.closed.Load() || req.Cmd == nil || req.Txn != nil || adminCommand(req.Cmd.Name) || readOnly(req) ||
		req.Opts.Read == "stale" || s.cfg.BatchProposals || s.cfg.Bug != "" || s.cfg.TxnStagger > 0 {
		return false
	}
	if s.reproposeAfter() == 0 {
		// repropose off: a write without a result would hold its
		// shard's completion goroutine, and every write behind it,
		// until its deadline; Do waits for it on its own goroutine.
		return false
	}
	sh, rerr := s.route(req)
	if rerr != nil {
		return false
	}
	// The caller must not block: a membership change holding s.mu (a
	// replica starting) leaves the write to Do.
	if !s.mu.TryRLock() {
		return false
	}
	me, hosted := s.local[sh]
	s.mu.RUnlock()
	if !hosted {
		return false
	}
	shardID := s.ShardID(sh)
	if leader, _, ok, _ := s.nh.GetLeaderID(shardID); !ok || leader != me {
		return false // Do redirects, or checks the membership first
	}
	now := time.Now()
	left := deadline.Sub(now)
	if left < time.Millisecond {
		return false
	}
	p := proposal{now: s.cfg.Clock().UnixNano(), proposer: s.proposer, seq: s.seq.Add(1), cmd: req.Cmd}
	data := encodeProposal(p)
	rs, err := s.nh.Propose(s.nh.GetNoOPSession(shardID), data, left)
	if err != nil {
		return false // not in the log: Do retries or answers
	}
	s.enqueueAsync(&asyncWrite{req: req, sh: sh, shardID: shardID, data: data, rs: rs, deadline: deadline, since: now, done: done})
	return true
}

// enqueueAsync queues w, proposed, on its shard's queue, starting the
// shard's completion goroutine if none runs.
func (s *Service) enqueueAsync(w *asyncWrite) {
	a := &s.async
	a.mu.Lock()
	q := a.queues[w.sh]
	if q == nil {
		if a.queues == nil {
			a.queues = map[int]*asyncQueue{}
		}
		q = &asyncQueue{wake: make(chan struct{}, 1)}
		a.queues[w.sh] = q
	}
	q.queue = append(q.queue, w)
	if !q.running {
		q.running = true
		go s.completeAsync(q)
	}
	a.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default: // already signalled
	}
}

// completeAsync is shard queue q's completion goroutine: it takes the
// queued writes in the order they were proposed and waits for each one's
// result in turn. Ordering rule: the leader applies a shard's proposals in
// log order, which is (for the writes of one Service) about the order they
// were queued in, so waiting in queue order rarely waits for one write
// while a later one is ready; a write without a result after
// reproposeAfter is handed to a goroutine of its own (asyncSlow) so it
// holds up the rest of its shard's queue at most that long, and other
// shards' queues not at all. It ends when the Service is closed and every
// queued write is finished (Dragonboat answers every pending proposal
// when its NodeHost closes).
func (s *Service) completeAsync(q *asyncQueue) {
	a := &s.async
	wait := s.reproposeAfter()
	var timer *time.Timer
	var batch []*asyncWrite
	for {
		a.mu.Lock()
		batch, q.queue = q.queue, batch[:0]
		a.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-q.wake:
				continue
			case <-s.closing:
				a.mu.Lock()
				empty := len(q.queue) == 0
				if empty {
					// A DoAsync that queues after this starts
					// another completion goroutine.
					q.running = false
				}
				a.mu.Unlock()
				if empty {
					return
				}
				continue
			}
		}
		for i, w := range batch {
			batch[i] = nil
			select {
			case r := <-w.rs.ResultC():
				s.finishAsync(w, r)
				continue
			default:
			}
			// DoAsync starts nothing with reproposing off: wait > 0.
			d := time.Until(w.since.Add(wait))
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			select {
			case r := <-w.rs.ResultC():
				s.finishAsync(w, r)
			case <-timer.C:
				go s.asyncSlow(w, nil)
			}
			timer.Stop()
		}
	}
}

// finishAsync finishes w with its proposal's result r, on the completion
// goroutine when that does not wait, else on a goroutine of its own.
func (s *Service) finishAsync(w *asyncWrite, r dragonboat.RequestResult) {
	switch {
	case r.Completed():
		out := r.GetResult().Data
		w.rs.Release()
		if reply, err := core.DecodeReply(out); err == nil && reply.IsError() && reply.Err.Code == CodeTxnConflict {
			// A key locked by a cross-shard transaction: writeResult
			// waits and retries (retryConflict).
			go func() {
				ctx, cancel := context.WithDeadline(context.Background(), w.deadline)
				defer cancel()
				w.done(s.writeResult(ctx, w.req, w.sh, out, 1, nil))
			}()
			return
		}
		w.done(s.writeResult(context.Background(), w.req, w.sh, out, 1, nil))
	case r.Dropped():
		// Not in the log (no leader at the time): Do's propose tries
		// again after an RTT while there is time.
		w.rs.Release()
		go s.asyncSlow(w, &r)
	case r.Rejected(): // not in the log, as proposeFrom answers it
		w.rs.Release()
		w.done(s.writeResult(context.Background(), w.req, w.sh, nil, 0, fmt.Errorf("%w: proposal %s", consistency.ErrUnavailable, resultString(r))))
	default: // timeout, aborted, terminated: it may still commit
		w.rs.Release()
		w.done(s.writeResult(context.Background(), w.req, w.sh, nil, 1, fmt.Errorf("%w: proposal %s", consistency.ErrTimeout, resultString(r))))
	}
}

// asyncSlow finishes w as Do would, on its own goroutine: dropped (r is
// its result) — propose it again from the start; or unanswered for
// reproposeAfter (r nil) — go on watching its copy and propose another.
func (s *Service) asyncSlow(w *asyncWrite, dropped *dragonboat.RequestResult) {
	s.async.slow.Add(1)
	ctx, cancel := context.WithDeadline(context.Background(), w.deadline)
	defer cancel()
	first := w.rs
	if dropped != nil {
		first = nil
		// As propose after a dropped copy: wait an RTT first.
		select {
		case <-ctx.Done():
			w.done(s.writeResult(ctx, w.req, w.sh, nil, 0, fmt.Errorf("%w: proposal dropped", consistency.ErrUnavailable)))
			return
		case <-time.After(s.retryWait(ctx, w.shardID)):
		}
	}
	res, copies, err := s.proposeFrom(ctx, w.shardID, w.data, first)
	w.done(s.writeResult(ctx, w.req, w.sh, res.Data, copies, err))
}
