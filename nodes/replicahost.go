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
	reqs    chan hostReq
	msgs    chan consistency.Message
	cancels chan uint64
	stop    chan struct{}
	done    chan struct{}
}

var _ consistency.Service = (*ReplicaHost)(nil)

type hostReq struct {
	req   consistency.Request
	reply chan consistency.Response
	idc   chan uint64 // the id the host gave the request, for cancellation
}

// HostOptions configure a ReplicaHost. Zero values mean the defaults.
type HostOptions struct {
	Tick    time.Duration    // replica tick interval; default 10ms
	Queue   int              // capacity of the request and message queues; default 4096
	Now     func() time.Time // the clock; default time.Now
	Logger  *slog.Logger     // default slog.Default()
	MaxRead int              // inputs handed to the replica before collecting Ready; default 256
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
		rep: rep, eng: eng, send: send, now: o.Now, log: o.Logger, tick: o.Tick,
		reqs:    make(chan hostReq, o.Queue),
		msgs:    make(chan consistency.Message, o.Queue),
		cancels: make(chan uint64, o.Queue),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go h.loop(o.MaxRead)
	return h
}

// Do implements consistency.Service. Replies with the strategies' UNAVAILABLE
// and TIMEOUT codes become consistency.ErrUnavailable and ErrTimeout.
func (h *ReplicaHost) Do(ctx context.Context, req consistency.Request) (consistency.Response, error) {
	hr := hostReq{req: req, reply: make(chan consistency.Response, 1), idc: make(chan uint64, 1)}
	select {
	case h.reqs <- hr:
	case <-h.stop:
		return consistency.Response{}, fmt.Errorf("nodes: replica host closed: %w", consistency.ErrUnavailable)
	case <-ctx.Done():
		return consistency.Response{}, fmt.Errorf("nodes: request not started: %w", consistency.ErrUnavailable)
	default:
		return consistency.Response{}, fmt.Errorf("nodes: replica queue full: %w", consistency.ErrUnavailable)
	}
	select {
	case resp := <-hr.reply:
		if resp.Reply.IsError() && resp.Reply.Err != nil {
			switch resp.Reply.Err.Code {
			case consistency.CodeUnavailable:
				return resp, fmt.Errorf("%s: %w", resp.Reply.Err.Msg, consistency.ErrUnavailable)
			case consistency.CodeTimeout:
				return resp, fmt.Errorf("%s: %w", resp.Reply.Err.Msg, consistency.ErrTimeout)
			}
		}
		return resp, nil
	case <-ctx.Done():
		select {
		case id := <-hr.idc:
			select {
			case h.cancels <- id:
			default:
			}
		default:
		}
		return consistency.Response{}, fmt.Errorf("nodes: %v: %w", ctx.Err(), consistency.ErrTimeout)
	case <-h.done:
		return consistency.Response{}, fmt.Errorf("nodes: replica host closed: %w", consistency.ErrTimeout)
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

func (h *ReplicaHost) loop(maxRead int) {
	defer close(h.done)
	pending := map[uint64]chan consistency.Response{}
	var nextID uint64
	t := time.NewTicker(h.tick)
	defer t.Stop()
	handle := func(in any) {
		now := h.now()
		switch v := in.(type) {
		case hostReq:
			nextID++
			v.req.ID = nextID
			pending[nextID] = v.reply
			v.idc <- nextID
			h.rep.Request(now, v.req)
		case consistency.Message:
			h.rep.Receive(now, v)
		case uint64:
			delete(pending, v)
		case time.Time:
			h.rep.Tick(now)
		}
	}
	for {
		var in any
		select {
		case <-h.stop:
			return
		case r := <-h.reqs:
			in = r
		case m := <-h.msgs:
			in = m
		case id := <-h.cancels:
			in = id
		case tm := <-t.C:
			in = tm
		}
		handle(in)
		// Group commit: take what else is already queued before syncing.
	drain:
		for i := 1; i < maxRead; i++ {
			select {
			case r := <-h.reqs:
				handle(r)
			case m := <-h.msgs:
				handle(m)
			case id := <-h.cancels:
				handle(id)
			default:
				break drain
			}
		}
		rd := h.rep.Ready()
		if rd.Sync {
			// Ordering rule: nothing the replica produced may leave the
			// node before its state is durable.
			if err := h.eng.Sync(); err != nil {
				h.log.Error("replica engine sync failed; dropping its outputs", "err", err)
				for _, r := range rd.Responses {
					if ch, ok := pending[r.ID]; ok {
						delete(pending, r.ID)
						ch <- consistency.Response{ID: r.ID, Reply: core.ErrorReply(core.AsError(fmt.Errorf("sync: %w", err)))}
					}
				}
				continue
			}
		}
		for _, m := range rd.Messages {
			h.send(m)
		}
		for _, r := range rd.Responses {
			if ch, ok := pending[r.ID]; ok {
				delete(pending, r.ID)
				ch <- r
			}
		}
	}
}
