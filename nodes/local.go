package nodes

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Local is the `local` strategy: one replica, no replication. One goroutine
// owns the core.Store and applies requests in arrival order; under
// --fsync=always it group-commits: it applies every request waiting in the
// queue (up to maxGroup), syncs the engine once, and only then answers the
// whole group, so no reply — read or write — reveals a state that is not
// durable. The same goroutine drives the TTL sweep and, under
// --fsync=interval, the periodic sync.
type Local struct {
	store  *core.Store
	engine core.Engine
	policy core.SyncPolicy
	log    *slog.Logger
	clock  func() time.Time

	in      chan *localJob
	stop    chan struct{}
	done    chan struct{}
	closing sync.Once
	stats   atomic.Pointer[core.Stats]
	syncs   atomic.Int64
	groups  atomic.Int64
}

// batcher is implemented by services that apply a list of requests as one
// unit (in order, one durability point). The node uses it for `execute`
// batches and falls back to one Do per command.
type batcher interface {
	DoBatch(ctx context.Context, reqs []consistency.Request) ([]consistency.Response, error)
}

var (
	_ consistency.Service = (*Local)(nil)
	_ batcher             = (*Local)(nil)
)

// maxGroup bounds the requests applied before one sync.
const maxGroup = 512

// Local's timers.
const (
	expireEvery = 100 * time.Millisecond
	expireBatch = 1000
)

type localJob struct {
	reqs  []consistency.Request
	resps []consistency.Response
	err   error
	done  chan struct{}
}

// LocalConfig configures NewLocal.
type LocalConfig struct {
	Store        *core.Store
	Policy       core.SyncPolicy // always: group commit; interval: sync every SyncInterval; never: leave it to the OS
	SyncInterval time.Duration   // default 100 ms
	Logger       *slog.Logger
	Clock        func() time.Time // default time.Now
}

// NewLocal starts a local service over cfg.Store. The store's engine must
// not sync on every commit by itself (open Pebble with core.SyncNever):
// Local decides when to sync.
func NewLocal(cfg LocalConfig) *Local {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = 100 * time.Millisecond
	}
	cfg.Store.SetSyncCommits(false)
	l := &Local{
		store:  cfg.Store,
		engine: cfg.Store.Engine(),
		policy: cfg.Policy,
		log:    cfg.Logger,
		clock:  cfg.Clock,
		in:     make(chan *localJob, 1024),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	st := cfg.Store.Stats()
	l.stats.Store(&st)
	go l.loop(cfg.SyncInterval)
	return l
}

// Do applies one request.
func (l *Local) Do(ctx context.Context, req consistency.Request) (consistency.Response, error) {
	rs, err := l.DoBatch(ctx, []consistency.Request{req})
	if err != nil {
		return consistency.Response{}, err
	}
	return rs[0], nil
}

// DoBatch applies reqs in order as one unit: their replies are released
// together after one sync.
func (l *Local) DoBatch(ctx context.Context, reqs []consistency.Request) ([]consistency.Response, error) {
	j := &localJob{reqs: reqs, done: make(chan struct{})}
	select {
	case l.in <- j:
	case <-l.stop:
		return nil, fmt.Errorf("local: service closed: %w", consistency.ErrUnavailable)
	case <-ctx.Done():
		// Never queued: certainly not applied.
		return nil, fmt.Errorf("local: queue full until the deadline: %w", consistency.ErrUnavailable)
	}
	select {
	case <-j.done:
		return j.resps, j.err
	case <-l.done:
		select {
		case <-j.done: // applied in the final drain
			return j.resps, j.err
		default: // queued after the loop ended: never applied
			return nil, fmt.Errorf("local: service closed: %w", consistency.ErrUnavailable)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("local: %v: %w", ctx.Err(), consistency.ErrTimeout)
	}
}

// Stats returns the store's counters as of the last group (safe to call
// concurrently).
func (l *Local) Stats() core.Stats { return *l.stats.Load() }

// Syncs is the number of engine syncs done for group commits.
func (l *Local) Syncs() int64 { return l.syncs.Load() }

// Groups is the number of groups applied.
func (l *Local) Groups() int64 { return l.groups.Load() }

// Close stops the service after the requests already queued, syncs the
// engine and returns. It does not close the engine.
func (l *Local) Close() error {
	l.closing.Do(func() { close(l.stop) })
	<-l.done
	return nil
}

func (l *Local) loop(syncEvery time.Duration) {
	defer close(l.done)
	expire := time.NewTicker(expireEvery)
	defer expire.Stop()
	var syncTick <-chan time.Time
	if l.policy == core.SyncInterval {
		t := time.NewTicker(syncEvery)
		defer t.Stop()
		syncTick = t.C
	}
	group := make([]*localJob, 0, 64)
	for {
		select {
		case j := <-l.in:
			group = append(group[:0], j)
			n := len(j.reqs)
		drain:
			for n < maxGroup {
				select {
				case j := <-l.in:
					group = append(group, j)
					n += len(j.reqs)
				default:
					break drain
				}
			}
			l.apply(group)
		case <-expire.C:
			if _, err := l.store.ExpireStep(l.clock(), expireBatch); err != nil {
				l.log.Error("ttl sweep failed", "err", err)
			}
			st := l.store.Stats()
			l.stats.Store(&st)
		case <-syncTick:
			if err := l.engine.Sync(); err != nil {
				l.log.Error("periodic sync failed", "err", err)
			}
		case <-l.stop:
			for {
				select {
				case j := <-l.in:
					l.apply([]*localJob{j})
					continue
				default:
				}
				break
			}
			if err := l.engine.Sync(); err != nil {
				l.log.Error("final sync failed", "err", err)
			}
			return
		}
	}
}

// apply runs a group of jobs, syncs once if needed, then answers them.
func (l *Local) apply(group []*localJob) {
	now := l.clock()
	wrote := false
	for _, j := range group {
		j.resps = make([]consistency.Response, len(j.reqs))
		for i, r := range j.reqs {
			var rep core.Reply
			switch {
			case r.Txn != nil:
				rep = l.store.ApplyTxn(now, *r.Txn)
				wrote = true
			case r.Cmd != nil:
				rep = l.store.Apply(now, *r.Cmd)
				if !core.IsReadOnly(r.Cmd.Name) {
					wrote = true
				}
			default:
				rep = core.ErrorReply(core.Errorf(core.CodeErr, "empty request"))
			}
			j.resps[i] = consistency.Response{ID: r.ID, Reply: rep}
		}
	}
	if wrote && l.policy == core.SyncAlways {
		l.syncs.Add(1)
		if err := l.engine.Sync(); err != nil {
			// The writes are applied but not durable: do not acknowledge
			// them as done. Their outcome is unknown to the client.
			l.log.Error("group sync failed", "err", err)
			for _, j := range group {
				j.resps, j.err = nil, fmt.Errorf("local: sync: %v: %w", err, consistency.ErrTimeout)
			}
		}
	}
	l.groups.Add(1)
	st := l.store.Stats()
	l.stats.Store(&st)
	for _, j := range group {
		close(j.done)
	}
}
