package nodes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// gatedEngine is a memory engine whose Sync blocks until the test lets it
// go: each Sync announces itself on entered and then takes one value from
// release (nil: sync, an error: fail). With open set, Sync passes straight
// through.
type gatedEngine struct {
	*core.MemEngine
	entered chan struct{}
	release chan error
	open    atomic.Bool
}

var _ core.Engine = (*gatedEngine)(nil)

func newGatedEngine() *gatedEngine {
	return &gatedEngine{MemEngine: core.NewMemEngine(), entered: make(chan struct{}, 16), release: make(chan error)}
}

func (g *gatedEngine) Sync() error {
	if g.open.Load() {
		return g.MemEngine.Sync()
	}
	g.entered <- struct{}{}
	if err := <-g.release; err != nil {
		return err
	}
	return g.MemEngine.Sync()
}

// durableVersion is key's version in the engine's synced state (0: absent).
func (g *gatedEngine) durableVersion(t *testing.T, key string) uint64 {
	t.Helper()
	st, err := core.NewStore(g.SyncedClone(), core.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	r := st.Apply(time.Now(), core.Cmd("GET", key))
	if r.IsError() {
		t.Fatalf("GET %s on the synced state: %v", key, r.Err)
	}
	return r.Version
}

func newGatedLocal(t testing.TB, policy core.SyncPolicy) (*Local, *gatedEngine) {
	t.Helper()
	g := newGatedEngine()
	st, err := core.NewStore(g, core.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	l := NewLocal(LocalConfig{Store: st, Policy: policy})
	t.Cleanup(func() {
		g.open.Store(true)
		// Let a sync that is still waiting go.
		select {
		case g.release <- nil:
		default:
		}
		l.Close()
	})
	return l, g
}

type result struct {
	resp consistency.Response
	err  error
}

// async runs one command on l and delivers its result on the returned
// channel.
func async(l *Local, name string, args ...string) <-chan result {
	ch := make(chan result, 1)
	c := core.Cmd(name, args...)
	go func() {
		r, err := l.Do(context.Background(), consistency.Request{Cmd: &c})
		ch <- result{r, err}
	}()
	return ch
}

func waitResult(t *testing.T, ch <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10 s", what)
	}
	return result{}
}

func waitEntered(t *testing.T, g *gatedEngine) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no sync started within 10 s")
	}
}

// waitApplied waits until l has applied n requests in all.
func waitApplied(t *testing.T, l *Local, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); l.Applied() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("applied %d requests, want %d", l.Applied(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// notYet fails if ch delivers within a short grace period (a reply that
// must wait for a sync the test is holding).
func notYet(t *testing.T, ch <-chan result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned (%+v, %v) before the sync it depends on", what, r.resp.Reply, r.err)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestLocalReadOfDirtyKeyWaitsForItsSync: under fsync=always a read of a
// key whose write is not yet synced is answered only after that sync, and
// what it answers is durable by then.
func TestLocalReadOfDirtyKeyWaitsForItsSync(t *testing.T) {
	l, g := newGatedLocal(t, core.SyncAlways)
	set := async(l, "SET", "k", "v1")
	waitEntered(t, g)
	get := async(l, "GET", "k")
	waitApplied(t, l, 2)
	notYet(t, set, "SET")
	notYet(t, get, "GET of the key being synced")
	g.release <- nil
	r := waitResult(t, get, "GET")
	if r.err != nil || string(r.resp.Reply.Str) != "v1" {
		t.Fatalf("GET = %+v, %v; want v1", r.resp.Reply, r.err)
	}
	if dv := g.durableVersion(t, "k"); dv < r.resp.Reply.Version || dv == 0 {
		t.Fatalf("GET revealed version %d, the durable version is %d", r.resp.Reply.Version, dv)
	}
	if r := waitResult(t, set, "SET"); r.err != nil {
		t.Fatal(r.err)
	}
}

// TestLocalReadOfCleanKeyDoesNotWait: a read of a key with no unsynced
// write is answered while a slow sync of other keys is in flight.
func TestLocalReadOfCleanKeyDoesNotWait(t *testing.T) {
	l, g := newGatedLocal(t, core.SyncAlways)
	first := async(l, "SET", "clean", "v")
	waitEntered(t, g)
	g.release <- nil
	if r := waitResult(t, first, "SET clean"); r.err != nil {
		t.Fatal(r.err)
	}
	slow := async(l, "SET", "dirty", "x")
	waitEntered(t, g) // the sync of "dirty" is now held
	for _, c := range [][]string{{"GET", "clean"}, {"GET", "absent"}, {"EXISTS", "clean", "other"}, {"TYPE", "clean"}} {
		r := waitResult(t, async(l, c[0], c[1:]...), c[0]+" of clean keys during a held sync")
		if r.err != nil || r.resp.Reply.IsError() {
			t.Fatalf("%v = %+v, %v", c, r.resp.Reply, r.err)
		}
	}
	notYet(t, slow, "SET dirty")
	g.release <- nil
	if r := waitResult(t, slow, "SET dirty"); r.err != nil {
		t.Fatal(r.err)
	}
}

// TestLocalPipelinedEpochs: while one sync is held, later writes are still
// applied (into the next epoch); a read of such a write waits for the
// next sync, not just the one in flight; a keyless read (SCAN.RANGE) waits
// for the newest epoch with writes.
func TestLocalPipelinedEpochs(t *testing.T) {
	l, g := newGatedLocal(t, core.SyncAlways)
	a := async(l, "SET", "a", "1")
	waitEntered(t, g) // sync 1 (a) held
	b := async(l, "SET", "b", "2")
	waitApplied(t, l, 2) // b applied during sync 1: pipelining
	getB := async(l, "GET", "b")
	scan := async(l, "SCAN.RANGE", "", "", "", "COUNT", "10")
	getA := async(l, "GET", "a")
	waitApplied(t, l, 5)
	notYet(t, getA, "GET a")
	g.release <- nil // sync 1 done: a is durable, b is not
	if r := waitResult(t, a, "SET a"); r.err != nil {
		t.Fatal(r.err)
	}
	if r := waitResult(t, getA, "GET a"); r.err != nil || string(r.resp.Reply.Str) != "1" {
		t.Fatalf("GET a = %+v, %v", r.resp.Reply, r.err)
	}
	waitEntered(t, g) // sync 2 (b) held
	notYet(t, getB, "GET b")
	notYet(t, scan, "SCAN.RANGE")
	g.release <- nil
	for _, ch := range []<-chan result{b, getB, scan} {
		if r := waitResult(t, ch, "after sync 2"); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if g.durableVersion(t, "b") == 0 {
		t.Fatal("b is not durable after its sync")
	}
}

// TestLocalFailedSync: a write whose sync fails is not acknowledged; a
// later read of its key does not show it until another sync succeeds.
func TestLocalFailedSync(t *testing.T) {
	l, g := newGatedLocal(t, core.SyncAlways)
	set := async(l, "SET", "k", "v")
	waitEntered(t, g)
	g.release <- errors.New("disk on fire")
	r := waitResult(t, set, "SET")
	if !errors.Is(r.err, consistency.ErrTimeout) {
		t.Fatalf("SET after a failed sync: %v, want ErrTimeout (outcome unknown)", r.err)
	}
	get := async(l, "GET", "k")
	waitEntered(t, g) // the read asked for a new sync
	notYet(t, get, "GET of a key whose sync failed")
	g.release <- nil
	if r := waitResult(t, get, "GET"); r.err != nil || string(r.resp.Reply.Str) != "v" {
		t.Fatalf("GET = %+v, %v", r.resp.Reply, r.err)
	}
	if g.durableVersion(t, "k") == 0 {
		t.Fatal("k is not durable after the second sync")
	}
}

// TestLocalNoWaitWithoutFsyncAlways: under never and interval, replies do
// not wait for syncs.
func TestLocalNoWaitWithoutFsyncAlways(t *testing.T) {
	for _, p := range []core.SyncPolicy{core.SyncNever, core.SyncInterval} {
		t.Run(p.String(), func(t *testing.T) {
			l, _ := newGatedLocal(t, p)
			for _, c := range [][]string{{"SET", "k", "v"}, {"GET", "k"}, {"SCAN.RANGE", "", "", "", "COUNT", "10"}} {
				if r := waitResult(t, async(l, c[0], c[1:]...), c[0]); r.err != nil {
					t.Fatal(r.err)
				}
			}
		})
	}
}

// TestLocalRepliesRevealOnlyDurableState: writers and readers run against
// a node whose syncs the test releases at random moments; every reply
// (read or write) must show a version that is durable when it arrives.
func TestLocalRepliesRevealOnlyDurableState(t *testing.T) {
	l, g := newGatedLocal(t, core.SyncAlways)
	stop := make(chan struct{})
	var syncer sync.WaitGroup
	syncer.Add(1)
	go func() {
		defer syncer.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-g.entered:
			case <-stop:
				return
			}
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			g.release <- nil
		}
	}()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		checked int
		errs    []string
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 150 {
				k := fmt.Sprintf("k%d", rng.IntN(6))
				c := core.Cmd("GET", k)
				if rng.IntN(3) == 0 {
					c = core.Cmd("SET", k, fmt.Sprintf("w%d-%d", w, i))
				}
				r, err := l.Do(context.Background(), consistency.Request{Cmd: &c})
				if err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					return
				}
				if r.Reply.Version == 0 {
					continue
				}
				if dv := g.durableVersion(t, k); dv < r.Reply.Version {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("%v answered version %d of %s; durable: %d", c, r.Reply.Version, k, dv))
					mu.Unlock()
				}
				mu.Lock()
				checked++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	syncer.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d violations, first: %s", len(errs), errs[0])
	}
	if checked < 100 {
		t.Fatalf("only %d replies carried a version; the test checks little", checked)
	}
	t.Logf("%d replies checked, %d syncs", checked, l.Syncs())
}

// TestLocalTryDoBatchNeverWaits: TryDoBatchBy (the event loop's path)
// never waits. While a sync is held, a write under fsync=always is applied
// and returned with the epoch its reply must wait for (closed only once the
// write is durable), as is a read of a key being synced; a read of a clean
// key is answered at once. With the lock taken it answers errWouldBlock and
// changes nothing.
func TestLocalTryDoBatchNeverWaits(t *testing.T) {
	try := func(l *Local, name string, args ...string) (consistency.Response, *epoch, error) {
		c := core.Cmd(name, args...)
		rs, wait, err := l.TryDoBatchBy(time.Now().Add(10*time.Second), []consistency.Request{{Cmd: &c}})
		if err != nil {
			return consistency.Response{}, wait, err
		}
		return rs[0], wait, nil
	}
	l, g := newGatedLocal(t, core.SyncAlways)
	first := async(l, "SET", "clean", "v")
	waitEntered(t, g)
	g.release <- nil
	if r := waitResult(t, first, "SET clean"); r.err != nil {
		t.Fatal(r.err)
	}
	slow := async(l, "SET", "dirty", "x")
	waitEntered(t, g) // the sync of "dirty" is now held
	if r, wait, err := try(l, "GET", "clean"); err != nil || wait != nil || string(r.Reply.Str) != "v" {
		t.Fatalf("GET clean during a held sync = %+v, %v, %v; want v at once", r.Reply, wait, err)
	}
	r, getWait, err := try(l, "GET", "dirty")
	if err != nil || getWait == nil || string(r.Reply.Str) != "x" {
		t.Fatalf("GET dirty during its held sync = %+v, %v, %v; want x held on its epoch", r.Reply, getWait, err)
	}
	r, setWait, err := try(l, "SET", "new", "n")
	if err != nil || setWait == nil || r.Reply.IsError() {
		t.Fatalf("SET new = %+v, %v, %v; want OK held on the next epoch", r.Reply, setWait, err)
	}
	select {
	case <-getWait.done:
		t.Fatal("GET dirty's epoch done while its sync is held")
	case <-setWait.done:
		t.Fatal("SET new's epoch done before any sync of it")
	default:
	}
	g.release <- nil // the sync of "dirty"
	if r := waitResult(t, slow, "SET dirty"); r.err != nil {
		t.Fatal(r.err)
	}
	<-getWait.done
	if err := getWait.result(); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, g) // the next epoch's, with "new"
	select {
	case <-setWait.done:
		t.Fatal("SET new's epoch done before its sync finished")
	default:
	}
	g.release <- nil
	<-setWait.done
	if err := setWait.result(); err != nil || g.durableVersion(t, "new") == 0 {
		t.Fatalf("SET new's epoch: %v, durable version %d; want synced", err, g.durableVersion(t, "new"))
	}

	n, _ := newGatedLocal(t, core.SyncNever)
	if r, wait, err := try(n, "SET", "k", "v"); err != nil || wait != nil || r.Reply.IsError() {
		t.Fatalf("fsync=never: SET = %+v, %v, %v", r.Reply, wait, err)
	}
	for _, lock := range []struct {
		name         string
		lock, unlock func()
	}{
		{"write lock", n.mu.Lock, n.mu.Unlock},
		{"read lock", n.mu.RLock, n.mu.RUnlock},
	} {
		applied := n.Applied()
		lock.lock()
		_, _, werr := try(n, "SET", "k", "w")
		_, _, rerr := try(n, "GET", "k")
		lock.unlock()
		if werr != errWouldBlock || (lock.name == "write lock" && rerr != errWouldBlock) || (lock.name == "read lock" && rerr != nil) {
			t.Fatalf("fsync=never, %s held: SET %v, GET %v; want errWouldBlock for the SET (and the GET under the write lock)", lock.name, werr, rerr)
		}
		if want := applied + map[bool]int64{true: 1, false: 0}[rerr == nil]; n.Applied() != want {
			t.Fatalf("%s held: applied %d, want %d", lock.name, n.Applied(), want)
		}
	}
	if r, _, err := try(n, "GET", "k"); err != nil || string(r.Reply.Str) != "v" {
		t.Fatalf("GET = %+v, %v: a refused SET changed the value", r.Reply, err)
	}
}

// TestLocalEpochOnDone: the callbacks of a held reply (epoch.OnDone, the
// transport.Waiter the event loop holds replies on) run once the epoch's
// sync has finished, on the syncer, with done closed and the outcome set —
// never before the sync, once each; one registered after the sync runs at
// once; a failed sync's callbacks see its error.
func TestLocalEpochOnDone(t *testing.T) {
	l, g := newGatedLocal(t, core.SyncAlways)
	set := func(key string) *epoch {
		t.Helper()
		c := core.Cmd("SET", key, "v")
		_, wait, err := l.TryDoBatchBy(time.Now().Add(10*time.Second), []consistency.Request{{Cmd: &c}})
		if err != nil || wait == nil {
			t.Fatalf("SET %s: wait %v, %v; want held on an epoch", key, wait, err)
		}
		return wait
	}
	type call struct {
		closed bool
		err    error
	}
	calls := make(chan call, 4)
	on := func(e *epoch) {
		e.OnDone(func() {
			closed := false
			select {
			case <-e.done:
				closed = true
			default:
			}
			calls <- call{closed, e.Err()}
		})
	}
	e := set("a")
	on(e)
	on(e)
	waitEntered(t, g)
	select {
	case c := <-calls:
		t.Fatalf("OnDone callback ran before the sync finished: %+v", c)
	case <-time.After(50 * time.Millisecond):
	}
	g.release <- nil
	for i := range 2 {
		select {
		case c := <-calls:
			if !c.closed || c.err != nil {
				t.Fatalf("callback %d: done closed %v, Err %v; want closed, nil", i, c.closed, c.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("callback %d did not run within 10 s of the sync", i)
		}
	}
	on(e) // after the sync: at once, on this goroutine
	select {
	case c := <-calls:
		if !c.closed || c.err != nil {
			t.Fatalf("late callback: %+v", c)
		}
	default:
		t.Fatal("a callback registered after the sync did not run at once")
	}
	f := set("b")
	on(f)
	waitEntered(t, g)
	g.release <- errors.New("disk on fire")
	select {
	case c := <-calls:
		if !c.closed || !errors.Is(c.err, consistency.ErrTimeout) {
			t.Fatalf("failed sync's callback: done closed %v, Err %v; want closed, ErrTimeout", c.closed, c.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed sync's callback did not run")
	}
	select {
	case c := <-calls:
		t.Fatalf("a callback ran twice: %+v", c)
	default:
	}
}

// TestLocalTrackAllocs: under --fsync=always every request's durability
// tracking runs on the serving path, under dmu. For a single command it
// allocates nothing but the mark of a key newly dirty in the epoch: not for
// reads of clean or dirty keys, keyless commands, or writes of keys
// already marked in the current epoch.
func TestLocalTrackAllocs(t *testing.T) {
	l, _ := newGatedLocal(t, core.SyncAlways)
	req := func(name string, args ...string) consistency.Request {
		c := core.Cmd(name, args...)
		return consistency.Request{Cmd: &c}
	}
	track := func(r consistency.Request, rep core.Reply) *epoch {
		l.dmu.Lock()
		defer l.dmu.Unlock()
		return l.track(r, rep)
	}
	if e := track(req("MSET", "k", "v", "j", "w"), core.OK()); e == nil {
		t.Fatal("MSET is not tracked")
	}
	for _, tc := range []struct {
		name string
		r    consistency.Request
		rep  core.Reply
		wait bool
	}{
		{"GET of a clean key", req("GET", "clean"), core.Nil(), false},
		{"GET of a dirty key", req("GET", "k"), core.Bulk([]byte("v")), true},
		{"SET of a dirty key", req("SET", "k", "v2"), core.OK(), true},
		{"DEL of two dirty keys", req("DEL", "k", "j"), core.Int(2), true},
		{"a failed SET of a clean key", req("SET", "clean"), core.ErrorReply(core.Errorf(core.CodeErr, "arity")), false},
		{"IDX.LIST (keyless)", req("IDX.LIST"), core.Nil(), true},
	} {
		var e *epoch
		allocs := testing.AllocsPerRun(100, func() { e = track(tc.r, tc.rep) })
		if allocs != 0 || (e != nil) != tc.wait {
			t.Errorf("%s: %v allocations, waits on an epoch: %v; want 0, %v", tc.name, allocs, e != nil, tc.wait)
		}
	}
}
