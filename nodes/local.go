package nodes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Local is the `local` strategy: one replica, no replication.
//
// Requests are applied to the core.Store by the goroutine that serves them,
// so a request costs no hand-off to another goroutine. Writes run one at a
// time under the write side of a sync.RWMutex (the Store's writes are
// single-threaded); a request (or a batch) made only of read-only commands
// runs under the read side, concurrently with other reads, through
// core.Store.Read. Reads never write, even a key they find expired (it
// reads as absent; the next write of the key or the TTL sweep, both under
// the write lock, removes it). Under --fsync=always durability is a
// pipelined group commit:
//
//   - Writes join the current sync epoch. A syncer goroutine takes the
//     epoch (the next writes start a new one), syncs the engine once, and
//     then releases every request waiting on that epoch. While it syncs, the
//     next epoch fills: applying never waits for a sync.
//   - Every key written is marked dirty until its epoch's sync. A reply
//     never reveals state that is not yet durable: a write is answered after
//     its epoch's sync; a read that touched dirty keys is answered after the
//     sync of the newest epoch among them; a read of clean keys is answered
//     at once, even while a sync is in flight. A read whose keys are not
//     known (SCAN.*, IDX.*) waits for the newest epoch with writes.
//
// Under --fsync=interval a timer syncs the engine every SyncInterval, and
// under --fsync=never the OS decides; neither waits. A timer also drives the
// TTL sweep.
type Local struct {
	store  *core.Store
	engine core.Engine
	policy core.SyncPolicy
	log    *slog.Logger
	clock  func() time.Time

	// mu guards the store: read-only requests hold it shared, everything
	// else (writes, transactions, the TTL sweep, Close) exclusively.
	mu     sync.RWMutex
	closed bool // guarded by mu

	// dmu guards the durability tracking below (fsync=always), which
	// concurrent readers update too. Lock order: mu (either side), then dmu;
	// the syncer takes dmu alone. Ordering rules: a writer commits to the
	// engine before it marks its keys in cur (so the sync of any epoch a
	// write is marked in covers it: the syncer swaps cur under dmu before it
	// syncs), and it marks them before it releases mu (so a read that sees
	// the write, having taken mu after it, also sees the mark); a reader
	// reads the store first and checks the marks after.
	dmu   sync.Mutex
	cur   *epoch            // collects writes for the next sync (fsync=always)
	last  *epoch            // the newest epoch that has writes (nil: none yet)
	dirty map[string]*epoch // keys written in epochs not yet known durable
	keys  [][]byte          // track's scratch: a command's keys

	kick    chan struct{} // capacity 1: cur has writes to sync
	stop    chan struct{}
	done    chan struct{} // closed when the background goroutines have ended
	closing sync.Once
	bg      sync.WaitGroup

	syncs   atomic.Int64
	applied atomic.Int64

	// entries and replies are ApplyBatch's arguments, reused from one
	// batch that writes to the next; guarded by mu (held exclusively).
	entries []core.BatchEntry
	replies []core.Reply
}

// epoch is one group commit: the writes applied between two syncs.
// Fields other than done, seq and the notify ones are guarded by Local.dmu
// until done is closed, and read-only afterwards. It is the
// transport.Waiter of the replies held on it (OnDone, Err).
type epoch struct {
	seq    uint64
	wrote  bool
	keys   []string // keys marked dirty in this epoch
	synced bool     // its sync has finished (err says how)
	err    error
	done   chan struct{}

	// nmu guards notify and fired: the callbacks OnDone registered, run by
	// the syncer once done is closed (fired).
	nmu    sync.Mutex
	notify []func()
	fired  bool
}

func newEpoch(seq uint64) *epoch { return &epoch{seq: seq, done: make(chan struct{})} }

// later returns the later of two epochs (nil is the earliest).
func later(a, b *epoch) *epoch {
	if a == nil || (b != nil && b.seq > a.seq) {
		return b
	}
	return a
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

// Local's timers.
const (
	expireEvery = 100 * time.Millisecond
	expireBatch = 1000
)

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
		cur:    newEpoch(1),
		dirty:  map[string]*epoch{},
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	l.bg.Add(1)
	go l.timers(cfg.SyncInterval)
	if l.policy == core.SyncAlways {
		l.bg.Add(1)
		go l.syncer()
	}
	go func() { l.bg.Wait(); close(l.done) }()
	return l
}

// Do applies one request.
func (l *Local) Do(ctx context.Context, req consistency.Request) (consistency.Response, error) {
	var one [1]consistency.Request
	one[0] = req
	rs, err := l.DoBatch(ctx, one[:])
	if err != nil {
		return consistency.Response{}, err
	}
	return rs[0], nil
}

// DoBatch applies reqs in order as one unit (no other request runs between
// them; a batch that writes is one engine batch, see core.Store.ApplyBatch)
// and answers them together, once the state their replies reveal is
// durable (--fsync=always).
func (l *Local) DoBatch(ctx context.Context, reqs []consistency.Request) ([]consistency.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local: %v before the request was applied: %w", err, consistency.ErrUnavailable)
	}
	resps, wait, err := l.apply(reqs, false)
	if err != nil || wait == nil {
		return resps, err
	}
	select {
	case <-wait.done:
		return resps, wait.result()
	case <-ctx.Done():
		return nil, fmt.Errorf("local: %v while waiting for the sync: %w", ctx.Err(), consistency.ErrTimeout)
	}
}

// DoBatchBy is DoBatch with a deadline instead of a context: it costs no
// context and, unless the replies must wait for a sync, no timer (the
// node's handler uses it).
func (l *Local) DoBatchBy(deadline time.Time, reqs []consistency.Request) ([]consistency.Response, error) {
	if !time.Now().Before(deadline) {
		return nil, fmt.Errorf("local: deadline passed before the request was applied: %w", consistency.ErrUnavailable)
	}
	resps, wait, err := l.apply(reqs, false)
	if err != nil {
		return nil, err
	}
	return l.waitBy(deadline, resps, wait)
}

// errWouldBlock is TryDoBatchBy's answer when the lock is taken: nothing
// was changed.
var errWouldBlock = errors.New("local: the request would block")

// TryDoBatchBy is DoBatchBy for a caller that must not block (the
// transport's event loop, see transport.Inline). If another request holds
// the lock it returns errWouldBlock, having changed nothing. If the replies
// may only be sent once a group commit's sync has finished (a write under
// --fsync=always, a read of a key not yet synced), it does not wait: it
// returns them with that epoch (wait non-nil), and the caller must not
// send them before wait.done is closed, nor at all if wait.result() then
// reports an error (see transport.Hold).
func (l *Local) TryDoBatchBy(deadline time.Time, reqs []consistency.Request) (resps []consistency.Response, wait *epoch, err error) {
	if !time.Now().Before(deadline) {
		return nil, nil, fmt.Errorf("local: deadline passed before the request was applied: %w", consistency.ErrUnavailable)
	}
	resps, wait, err = l.apply(reqs, true)
	if err != nil || wait == nil {
		return resps, nil, err
	}
	select {
	case <-wait.done:
		return resps, nil, wait.result()
	default:
		return resps, wait, nil
	}
}

// waitBy waits, until deadline, for the sync of wait (nil: none) that
// resps depend on.
func (l *Local) waitBy(deadline time.Time, resps []consistency.Response, wait *epoch) ([]consistency.Response, error) {
	if wait == nil {
		return resps, nil
	}
	select {
	case <-wait.done:
		return resps, wait.result()
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-wait.done:
		return resps, wait.result()
	case <-t.C:
		return nil, fmt.Errorf("local: deadline passed while waiting for the sync: %w", consistency.ErrTimeout)
	}
}

// OnDone calls f once the epoch's sync has finished: on the syncer's
// goroutine, right after it closes done, or at once if that has happened
// (transport.Waiter). f must not block: it holds up the next sync.
func (e *epoch) OnDone(f func()) {
	e.nmu.Lock()
	if e.fired {
		e.nmu.Unlock()
		f()
		return
	}
	e.notify = append(e.notify, f)
	e.nmu.Unlock()
}

// Err is the epoch's outcome once it has finished (transport.Waiter).
func (e *epoch) Err() error { return e.result() }

// finish closes done and runs the OnDone callbacks (the syncer, once the
// epoch's outcome is set).
func (e *epoch) finish() {
	close(e.done)
	e.nmu.Lock()
	fs := e.notify
	e.notify, e.fired = nil, true
	e.nmu.Unlock()
	for _, f := range fs {
		f()
	}
}

// result is the outcome of a finished epoch for the requests waiting on it.
func (e *epoch) result() error {
	if e.err != nil {
		// Applied but not durable: the outcome is unknown to the client,
		// and a read must not show the state.
		return fmt.Errorf("local: sync: %v: %w", e.err, consistency.ErrTimeout)
	}
	return nil
}

// readOnly reports whether every request of reqs is a read-only command
// (such a batch runs under the read lock).
func readOnly(reqs []consistency.Request) bool {
	for _, r := range reqs {
		if r.Txn != nil || r.Cmd == nil || !core.IsReadOnly(r.Cmd.Name) {
			return false
		}
	}
	return true
}

// apply applies reqs under l.mu (shared if they only read, else exclusive)
// and returns their replies and the epoch whose sync they must wait for
// (nil: none). With try set it does not wait for l.mu: errWouldBlock if
// the lock is taken.
func (l *Local) apply(reqs []consistency.Request, try bool) ([]consistency.Response, *epoch, error) {
	ro := readOnly(reqs)
	switch {
	case ro && try:
		if !l.mu.TryRLock() {
			return nil, nil, errWouldBlock
		}
		defer l.mu.RUnlock()
	case ro:
		l.mu.RLock()
		defer l.mu.RUnlock()
	case try:
		if !l.mu.TryLock() {
			return nil, nil, errWouldBlock
		}
		defer l.mu.Unlock()
	default:
		l.mu.Lock()
		defer l.mu.Unlock()
	}
	resps := make([]consistency.Response, len(reqs))
	if l.closed {
		return nil, nil, fmt.Errorf("local: service closed: %w", consistency.ErrUnavailable)
	}
	now := l.clock()
	if !ro && len(reqs) > 1 {
		// A batch that writes is one engine batch (one WAL write, one
		// commit), each request still atomic on its own (core.ApplyBatch).
		// (entries and replies are reused: mu is held exclusively.)
		entries := slices.Grow(l.entries[:0], len(reqs))[:len(reqs)]
		replies := slices.Grow(l.replies[:0], len(reqs))[:len(reqs)]
		for i, r := range reqs {
			entries[i] = core.BatchEntry{Cmd: r.Cmd, Txn: r.Txn}
		}
		l.store.ApplyBatch(now, entries, replies)
		for i, r := range reqs {
			resps[i] = consistency.Response{ID: r.ID, Reply: replies[i]}
		}
		clear(entries) // (no references kept to the batch)
		clear(replies)
		if cap(entries) <= maxScratchBatch {
			l.entries, l.replies = entries, replies
		}
	} else {
		if ro && len(reqs) > 1 {
			// A batch of reads: its keys are looked up in one pass first
			// (core.Store.PrefetchEach; ApplyBatch does the same).
			l.store.PrefetchEach(len(reqs), func(i int) *core.Command { return reqs[i].Cmd })
		}
		for i, r := range reqs {
			var rep core.Reply
			switch {
			case ro:
				rep = l.store.Read(now, *r.Cmd)
			case r.Txn != nil:
				rep = l.store.ApplyTxn(now, *r.Txn)
			case r.Cmd != nil:
				rep = l.store.Apply(now, *r.Cmd)
			default:
				rep = core.ErrorReply(core.Errorf(core.CodeErr, "empty request"))
			}
			resps[i] = consistency.Response{ID: r.ID, Reply: rep}
		}
	}
	l.applied.Add(int64(len(reqs)))
	if l.policy != core.SyncAlways {
		return resps, nil, nil
	}
	// Tracked after every reply is built: the writes are in the engine
	// (see dmu's ordering rules), and still under mu.
	var wait *epoch
	l.dmu.Lock()
	for i, r := range reqs {
		wait = later(wait, l.track(r, resps[i].Reply))
	}
	if wait != nil && wait == l.cur {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	l.dmu.Unlock()
	return resps, wait, nil
}

// track records what request r (just applied, with reply rep) wrote and
// returns the epoch whose sync its reply must wait for (nil: none). l.mu
// (exclusive if r wrote) and l.dmu are held.
func (l *Local) track(r consistency.Request, rep core.Reply) *epoch {
	if r.Txn != nil {
		var keys [][]byte
		for _, c := range r.Txn.Conds {
			keys = append(keys, c.Key)
		}
		for _, c := range r.Txn.Cmds {
			keys = append(keys, core.CommandKeys(c)...)
		}
		if rep.IsError() { // nothing written: it read the keys
			return l.readNeed(keys)
		}
		return l.write(keys)
	}
	if r.Cmd == nil {
		return nil
	}
	// l.keys is scratch space (guarded by dmu): tracking a single command
	// allocates nothing but the marks of new dirty keys.
	keys, known, readOnly := core.AppendCommandKeys(l.keys[:0], *r.Cmd)
	var e *epoch
	switch {
	case !readOnly && !rep.IsError():
		// (A command that fails changes nothing; its error may still
		// reveal the key's state, so it counts as a read. An unknown
		// command fails.)
		e = l.write(keys)
	case len(keys) == 0 && known:
		e = l.readAll()
	default:
		e = l.readNeed(keys)
	}
	clear(keys) // keeps no reference to the request's arguments
	l.keys = keys[:0]
	return e
}

// write marks keys dirty in the current epoch and returns it.
func (l *Local) write(keys [][]byte) *epoch {
	e := l.cur
	e.wrote = true
	l.last = e
	for _, k := range keys {
		if l.dirty[string(k)] != e {
			s := string(k)
			l.dirty[s] = e
			e.keys = append(e.keys, s)
		}
	}
	return e
}

// readNeed returns the newest unsynced epoch among keys' marks. A key whose
// epoch's sync failed is written into the current epoch again: its state
// becomes durable with the next successful sync.
func (l *Local) readNeed(keys [][]byte) *epoch {
	var need *epoch
	for _, k := range keys {
		e := l.dirty[string(k)]
		switch {
		case e == nil:
		case !e.synced:
			need = later(need, e)
		case e.err == nil:
			delete(l.dirty, string(k))
		default:
			need = later(need, l.write([][]byte{k}))
		}
	}
	return need
}

// readAll is readNeed for a read that may reveal any key: it waits for the
// newest epoch with writes.
func (l *Local) readAll() *epoch {
	e := l.last
	switch {
	case e == nil || (e.synced && e.err == nil):
		return nil
	case e.synced: // failed: sync again
		return l.write(nil)
	}
	return e
}

// syncer runs the group commits of --fsync=always, one after the other:
// while one syncs, the next epoch collects writes.
func (l *Local) syncer() {
	defer l.bg.Done()
	for {
		select {
		case <-l.kick:
			l.syncEpoch()
		case <-l.stop:
			// Close has set closed: nothing joins an epoch any more.
			l.syncEpoch()
			return
		}
	}
}

// syncEpoch syncs the current epoch, if it has writes, and releases its
// waiters.
func (l *Local) syncEpoch() {
	l.dmu.Lock()
	e := l.cur
	if !e.wrote {
		l.dmu.Unlock()
		return
	}
	l.cur = newEpoch(e.seq + 1)
	l.dmu.Unlock()
	// Every write marked in e was committed to the engine before it was
	// marked, and so before the swap above (both under l.dmu): this sync
	// covers them all. A write committed before the swap but marked after
	// it lands in the next epoch, which only makes it wait longer.
	err := l.engine.Sync()
	l.syncs.Add(1)
	if err != nil {
		// The writes are applied but not durable: their waiters get an
		// error, and their keys stay dirty until a later sync succeeds.
		l.log.Error("group sync failed", "err", err)
	}
	l.dmu.Lock()
	e.synced, e.err = true, err
	if err == nil {
		for _, k := range e.keys {
			if l.dirty[k] == e {
				delete(l.dirty, k)
			}
		}
	}
	e.keys = nil
	l.dmu.Unlock()
	// The held replies are written here, by the syncer, before the next
	// sync starts (each with one write that does not wait): no goroutine
	// to wake per epoch.
	e.finish()
}

// timers drives the TTL sweep and, under --fsync=interval, the periodic
// sync.
func (l *Local) timers(syncEvery time.Duration) {
	defer l.bg.Done()
	expire := time.NewTicker(expireEvery)
	defer expire.Stop()
	var syncTick <-chan time.Time
	if l.policy == core.SyncInterval {
		t := time.NewTicker(syncEvery)
		defer t.Stop()
		syncTick = t.C
	}
	for {
		select {
		case <-expire.C:
			l.mu.Lock()
			if !l.closed {
				if _, err := l.store.ExpireStep(l.clock(), expireBatch); err != nil {
					l.log.Error("ttl sweep failed", "err", err)
				}
			}
			l.mu.Unlock()
		case <-syncTick:
			if err := l.engine.Sync(); err != nil {
				l.log.Error("periodic sync failed", "err", err)
			}
		case <-l.stop:
			return
		}
	}
}

// Stats returns the store's counters (safe to call concurrently).
func (l *Local) Stats() core.Stats {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.store.Stats()
}

// Syncs is the number of engine syncs done for group commits.
func (l *Local) Syncs() int64 { return l.syncs.Load() }

// Applied is the number of requests applied.
func (l *Local) Applied() int64 { return l.applied.Load() }

// Close stops the service: requests already applied are answered (after
// their sync), later ones fail with ErrUnavailable. It syncs the engine
// and returns; it does not close the engine.
func (l *Local) Close() error {
	l.closing.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.stop)
	})
	<-l.done
	if err := l.engine.Sync(); err != nil {
		l.log.Error("final sync failed", "err", err)
		return fmt.Errorf("local: final sync: %w", err)
	}
	return nil
}
