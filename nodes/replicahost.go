package nodes

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// ReplicaHost runs a sans-IO consistency.Replica on a real node: one
// goroutine owns the replica and feeds it client requests, peer messages and
// ticks with the wall clock, and carries out its Ready — syncing the engine
// before anything it produced leaves the node. It implements
// consistency.Service, so the node routes a namespace's requests to it like
// to any other strategy.
//
// Inputs that arrive together are handed to the replica before its Ready is
// collected, so one engine sync covers all of them (group commit).
type ReplicaHost struct {
	rep     consistency.Replica
	eng     core.Engine
	send    func(consistency.Message)
	now     func() time.Time
	log     *slog.Logger
	tick    time.Duration
	keyed   bool
	samples func([]consistency.Sample)
	reqs    chan *hostJob
	msgs    chan consistency.Message
	cancels chan *hostJob
	calls   chan func(consistency.Replica)
	stop    chan struct{}
	done    chan struct{}
}

var (
	_ consistency.Service = (*ReplicaHost)(nil)
	_ batcher             = (*ReplicaHost)(nil)
)

// hostJob is one Do or DoBatch call. Its requests form chains: requests of
// one chain run one after the other (each gets the previous one's token),
// different chains run at the same time. Only the host goroutine touches a
// job after it was queued, until it is answered on reply.
type hostJob struct {
	reqs     []consistency.Request
	resps    []consistency.Response
	chains   map[string][]int // chain -> indices not started yet, in order
	chainOf  []string         // request index -> its chain
	inflight map[uint64]int   // replica request id -> request index
	left     int              // requests not answered yet
	finished bool
	reply    chan []consistency.Response // buffered 1
}

// HostOptions configure a ReplicaHost. Zero values mean the defaults.
type HostOptions struct {
	Tick    time.Duration    // replica tick interval; default 10ms
	Queue   int              // capacity of the request and message queues; default 4096
	Now     func() time.Time // the clock; default time.Now
	Logger  *slog.Logger     // default slog.Default()
	MaxRead int              // inputs handed to the replica before collecting Ready; default 256
	// KeyedBatches lets DoBatch run commands on different keys at the same
	// time (per-key order kept). Set it for strategies whose keys are
	// independent (quorum: a session token is bound to its key). Without
	// it a batch runs in order, each command carrying the previous one's
	// token (causal: a session's writes depend on each other).
	KeyedBatches bool
	// Samples receives what the replica measured (if it is a
	// consistency.Meter), from the host's goroutine; it must not block.
	Samples func([]consistency.Sample)
}

// NewReplicaHost starts a host for rep, whose storage is eng. send carries
// a message to a peer; it must not block (drop instead: the strategies
// retry).
func NewReplicaHost(rep consistency.Replica, eng core.Engine, send func(consistency.Message), o HostOptions) *ReplicaHost {
	if o.Tick <= 0 {
		o.Tick = 10 * time.Millisecond
	}
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxRead <= 0 {
		o.MaxRead = 256
	}
	h := &ReplicaHost{
		rep: rep, eng: eng, send: send, now: o.Now, log: o.Logger, tick: o.Tick, keyed: o.KeyedBatches, samples: o.Samples,
		reqs:    make(chan *hostJob, o.Queue),
		msgs:    make(chan consistency.Message, o.Queue),
		cancels: make(chan *hostJob, o.Queue),
		calls:   make(chan func(consistency.Replica), 64),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go h.loop(o.MaxRead)
	return h
}

// Do implements consistency.Service. Replies with the strategies' UNAVAILABLE
// and TIMEOUT codes become consistency.ErrUnavailable and ErrTimeout.
func (h *ReplicaHost) Do(ctx context.Context, req consistency.Request) (consistency.Response, error) {
	rs, err := h.DoBatch(ctx, []consistency.Request{req})
	if err != nil {
		return consistency.Response{}, err
	}
	if len(rs) != 1 {
		return consistency.Response{}, fmt.Errorf("nodes: replica host answered %d responses to 1 request: %w", len(rs), consistency.ErrUnavailable)
	}
	resp := rs[0]
	if resp.Reply.IsError() && resp.Reply.Err != nil {
		switch resp.Reply.Err.Code {
		case consistency.CodeUnavailable:
			return resp, fmt.Errorf("%s: %w", resp.Reply.Err.Msg, consistency.ErrUnavailable)
		case consistency.CodeTimeout:
			return resp, fmt.Errorf("%s: %w", resp.Reply.Err.Msg, consistency.ErrTimeout)
		}
	}
	return resp, nil
}

// DoBatch queues a batch of requests at once and returns one response per
// request, in order. With HostOptions.KeyedBatches, requests on different
// keys are in flight together and requests on the same key run in order,
// each carrying the token of the previous one on that key; otherwise the
// whole batch is one such chain. When ctx ends first, the requests still in
// flight get TIMEOUT replies (outcome unknown) and those not started
// UNAVAILABLE replies (they did not take effect). The error is non-nil only
// when the batch could not be queued at all.
func (h *ReplicaHost) DoBatch(ctx context.Context, reqs []consistency.Request) ([]consistency.Response, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	j := &hostJob{reqs: reqs, reply: make(chan []consistency.Response, 1)}
	select {
	case <-h.stop:
		return nil, fmt.Errorf("nodes: replica host closed: %w", consistency.ErrUnavailable)
	case <-ctx.Done():
		return nil, fmt.Errorf("nodes: request not started: %w", consistency.ErrUnavailable)
	default:
	}
	select {
	case h.reqs <- j:
	default:
		return nil, fmt.Errorf("nodes: replica queue full: %w", consistency.ErrUnavailable)
	}
	select {
	case rs := <-j.reply:
		return rs, nil
	case <-ctx.Done():
		select {
		case h.cancels <- j:
		case rs := <-j.reply:
			return rs, nil
		case <-h.done:
			return nil, fmt.Errorf("nodes: replica host closed: %w", consistency.ErrTimeout)
		}
		select {
		case rs := <-j.reply:
			return rs, nil
		case <-h.done:
			return nil, fmt.Errorf("nodes: replica host closed: %w", consistency.ErrTimeout)
		}
	case <-h.done:
		return nil, fmt.Errorf("nodes: replica host closed: %w", consistency.ErrTimeout)
	}
}

// Deliver hands the replica a message from a peer. It never blocks: when the
// queue is full the message is dropped (the strategies retry).
func (h *ReplicaHost) Deliver(m consistency.Message) bool {
	select {
	case h.msgs <- m:
		return true
	default:
		return false
	}
}

// Call runs f on the host's goroutine with the replica (for inputs other
// than requests and messages, such as membership changes) and waits for it.
// It returns false if the host is closed.
func (h *ReplicaHost) Call(f func(consistency.Replica)) bool {
	done := make(chan struct{})
	select {
	case h.calls <- func(r consistency.Replica) { f(r); close(done) }:
	case <-h.done:
		return false
	}
	select {
	case <-done:
		return true
	case <-h.done:
		return false
	}
}

// Close stops the host; requests still waiting get ErrTimeout.
func (h *ReplicaHost) Close() error {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
	return nil
}

// chainOf names the chain a request belongs to.
func (h *ReplicaHost) chainOf(req consistency.Request) string {
	if !h.keyed || req.Cmd == nil {
		return ""
	}
	keys := core.CommandKeys(*req.Cmd)
	if len(keys) == 0 && len(req.Cmd.Args) > 0 {
		keys = req.Cmd.Args[:1] // commands the core table does not know: the first argument
	}
	var b []byte
	for _, k := range keys {
		b = append(b, k...)
		b = append(b, 0)
	}
	return string(b)
}

func (h *ReplicaHost) loop(maxRead int) {
	defer close(h.done)
	pending := map[uint64]*hostJob{}
	var nextID uint64
	t := time.NewTicker(h.tick)
	defer t.Stop()
	now := h.now()
	// start hands request i of j to the replica.
	start := func(j *hostJob, i int, tok []byte) {
		nextID++
		req := j.reqs[i]
		req.ID = nextID
		if tok != nil {
			req.Token = tok
		}
		pending[nextID] = j
		j.inflight[nextID] = i
		h.rep.Request(now, req)
	}
	finish := func(j *hostJob) {
		j.finished = true
		j.reply <- j.resps
	}
	// answer records a replica response and starts the next request of its
	// chain; it reports whether it started one.
	answer := func(r consistency.Response) bool {
		j, ok := pending[r.ID]
		if !ok {
			return false
		}
		delete(pending, r.ID)
		i := j.inflight[r.ID]
		delete(j.inflight, r.ID)
		r.ID = j.reqs[i].ID
		j.resps[i] = r
		j.left--
		if j.left == 0 {
			finish(j)
			return false
		}
		c := j.chainOf[i]
		if q := j.chains[c]; len(q) > 0 {
			j.chains[c] = q[1:]
			start(j, q[0], r.Token)
			return true
		}
		return false
	}
	handle := func(in any) {
		now = h.now()
		switch v := in.(type) {
		case *hostJob:
			if v.finished {
				// Cancelled while still queued (its caller was told it
				// did not start): it must not start now.
				return
			}
			v.resps = make([]consistency.Response, len(v.reqs))
			v.chainOf = make([]string, len(v.reqs))
			v.chains = map[string][]int{}
			v.inflight = map[uint64]int{}
			v.left = len(v.reqs)
			var heads []int
			for i, req := range v.reqs {
				c := h.chainOf(req)
				v.chainOf[i] = c
				if _, ok := v.chains[c]; !ok {
					v.chains[c] = []int{}
					heads = append(heads, i)
				} else {
					v.chains[c] = append(v.chains[c], i)
				}
			}
			for _, i := range heads {
				start(v, i, nil)
			}
		case consistency.Message:
			h.rep.Receive(now, v)
		case func(consistency.Replica):
			v(h.rep)
		case time.Time:
			h.rep.Tick(now)
		}
	}
	cancel := func(j *hostJob) {
		if j.finished {
			return
		}
		if j.resps == nil {
			// Ordering rule: a caller whose deadline passed while its job
			// was still in h.reqs sends the job to h.cancels, and the
			// loop's select may take the cancel first. The job has not
			// been handled: nothing started, every request gets the
			// not-started reply (and handle skips the job when it comes).
			// Replying nil here made Do index an empty slice.
			j.resps = make([]consistency.Response, len(j.reqs))
			for i := range j.reqs {
				j.resps[i] = consistency.Response{ID: j.reqs[i].ID, Reply: core.ErrorReply(&core.Error{Code: consistency.CodeUnavailable, Msg: "deadline passed before the request started"})}
			}
			finish(j)
			return
		}
		for id, i := range j.inflight {
			delete(pending, id)
			j.resps[i] = consistency.Response{ID: j.reqs[i].ID, Reply: core.ErrorReply(&core.Error{Code: consistency.CodeTimeout, Msg: "deadline passed before the request completed (outcome unknown)"})}
		}
		for _, q := range j.chains {
			for _, i := range q {
				j.resps[i] = consistency.Response{ID: j.reqs[i].ID, Reply: core.ErrorReply(&core.Error{Code: consistency.CodeUnavailable, Msg: "deadline passed before the request started"})}
			}
		}
		finish(j)
	}
	again := false
	for {
		if !again {
			var in any
			select {
			case <-h.stop:
				return
			case r := <-h.reqs:
				in = r
			case m := <-h.msgs:
				in = m
			case j := <-h.cancels:
				cancel(j)
				continue
			case f := <-h.calls:
				in = f
			case tm := <-t.C:
				in = tm
			}
			handle(in)
		}
		again = false
		// Group commit: take what else is already queued before syncing.
	drain:
		for i := 1; i < maxRead; i++ {
			select {
			case r := <-h.reqs:
				handle(r)
			case m := <-h.msgs:
				handle(m)
			case j := <-h.cancels:
				cancel(j)
			case f := <-h.calls:
				handle(f)
			case tm := <-t.C:
				// Busy with chains (again): timers must still fire.
				handle(tm)
			default:
				break drain
			}
		}
		rd := h.rep.Ready()
		if m, ok := h.rep.(consistency.Meter); ok && h.samples != nil {
			if s := m.TakeSamples(); len(s) > 0 {
				h.samples(s)
				for _, x := range s {
					switch x.Name {
					case corruptionSample:
						h.log.Error("replica met stored data that failed its checksum", "kind", x.Label, "count", x.Value)
					case repairSample:
						h.log.Warn("replica rebuilt corrupt records from the other regions' copies", "kind", x.Label, "count", x.Value)
					case lostSample:
						h.log.Error("version lost: a write of this node that no region holds after its store was rebuilt", "write", x.Label)
					case rebuiltSample:
						h.log.Warn("causal store rebuilt from the other regions; its keys are served again", "detail", x.Label)
					case goneSample:
						h.log.Warn("gone notice applied: another node lost this acknowledged write in a store rebuild; what depends on it proceeds without it", "write", x.Label)
					case replacedSample:
						h.log.Info("re-sent replaced write applied: another node's store rebuild re-sent a write of it that a newer write replaced; nothing was lost", "write", x.Label)
					case stalledSample:
						h.log.Warn("causal store rebuild stalled: nodes of other regions do not answer (down or cut off); its keys stay refused until they do", "detail", x.Label)
					}
				}
			}
		}
		if rd.Sync {
			// Ordering rule: nothing the replica produced may leave the
			// node before its state is durable.
			if err := h.eng.Sync(); err != nil {
				h.log.Error("replica engine sync failed; dropping its outputs", "err", err)
				for _, r := range rd.Responses {
					again = answer(consistency.Response{ID: r.ID, Reply: core.ErrorReply(core.AsError(fmt.Errorf("sync: %w", err)))}) || again
				}
				continue
			}
		}
		for _, m := range rd.Messages {
			h.send(m)
		}
		for _, r := range rd.Responses {
			again = answer(r) || again
		}
	}
}
