package pebbleengine

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
)

// TestConcurrentReads runs core.Store.Read from several goroutines under a
// read lock while a writer applies commands under the write lock, as the
// node's local strategy does, on both engines. Run it with -race:
//
//	go test -race -run TestConcurrentReads -count=3 ./core/pebbleengine
//
// Every reply is checked: a GET of k<j> returns a value the writer wrote to
// that key ("v<i>" with i = j mod keys) and never one older than the
// reader saw before (the writer only moves forward); MGET, HGET and the INCR
// counter likewise; keys that expired before the run read as absent and are
// not removed by the reads (ExpireStep still finds them all at the end).
func TestConcurrentReads(t *testing.T) {
	const (
		keys    = 16
		writes  = 1500
		readers = 4
		expired = 10
	)
	for _, be := range []struct {
		name string
		open func(t *testing.T) core.Engine
	}{
		{"mem", func(*testing.T) core.Engine { return core.NewMemEngine() }},
		{"pebble", func(t *testing.T) core.Engine {
			e, err := Open(t.TempDir(), Options{Sync: core.SyncNever})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = e.Close() })
			return e
		}},
	} {
		t.Run(be.name, func(t *testing.T) {
			s, err := core.NewStore(be.open(t), core.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Unix(1_700_000_000, 0)
			for j := 0; j < expired; j++ {
				if r := s.Apply(t0, core.Cmd("SET", "e"+strconv.Itoa(j), "x", "PX", "1000")); r.IsError() {
					t.Fatal(r.Err)
				}
			}
			now := t0.Add(10 * time.Second) // the e* keys have expired
			var mu sync.RWMutex
			done := make(chan struct{})
			errs := make(chan error, readers+1)

			go func() { // the writer
				defer close(done)
				for i := 1; i <= writes; i++ {
					cmds := []core.Command{
						core.Cmd("SET", "k"+strconv.Itoa(i%keys), "v"+strconv.Itoa(i)),
						core.Cmd("INCR", "ctr"),
						core.Cmd("HSET", "h", "f", strconv.Itoa(i)),
					}
					mu.Lock()
					for _, c := range cmds {
						if r := s.Apply(now, c); r.IsError() {
							mu.Unlock()
							errs <- fmt.Errorf("writer: %s: %v", c, r.Err)
							return
						}
					}
					mu.Unlock()
				}
			}()

			var wg sync.WaitGroup
			for g := 0; g < readers; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					if err := readLoop(s, &mu, now, done, g, keys, expired); err != nil {
						errs <- fmt.Errorf("reader %d: %w", g, err)
					}
				}(g)
			}
			wg.Wait()
			<-done
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if n, err := s.ExpireStep(now, 1000); err != nil || n != expired {
				t.Errorf("ExpireStep after the reads removed %d keys (%v), want the %d expired ones: a read wrote", n, err, expired)
			}
			if r := s.Apply(now, core.Cmd("GET", "ctr")); r.Kind != core.KindBulk || string(r.Str) != strconv.Itoa(writes) {
				t.Errorf("ctr = %v, want %d", r, writes)
			}
		})
	}
}

// readLoop reads until done is closed (and once more after), checking
// each reply against what the writer can have written.
func readLoop(s *core.Store, mu *sync.RWMutex, now time.Time, done <-chan struct{}, g, keys, expired int) error {
	last := make([]int, keys) // newest i seen per key
	var lastCtr, lastH int
	read := func(c core.Command) core.Reply {
		mu.RLock()
		defer mu.RUnlock()
		return s.Read(now, c)
	}
	// seen checks a GET/MGET element of k<j>.
	seen := func(j int, r core.Reply) error {
		if r.Kind == core.KindNil {
			if last[j] != 0 {
				return fmt.Errorf("k%d absent after v%d", j, last[j])
			}
			return nil
		}
		if r.Kind != core.KindBulk || len(r.Str) < 2 || r.Str[0] != 'v' {
			return fmt.Errorf("k%d: unexpected reply %v", j, r)
		}
		i, err := strconv.Atoi(string(r.Str[1:]))
		if err != nil || i%keys != j || i < last[j] {
			return fmt.Errorf("k%d = %q after v%d (want v<i>, i = %d mod %d, not older)", j, r.Str, last[j], j, keys)
		}
		last[j] = i
		return nil
	}
	counter := func(name string, r core.Reply, lastp *int) error {
		if r.Kind == core.KindNil && *lastp == 0 {
			return nil
		}
		n, err := strconv.Atoi(string(r.Str))
		if r.Kind != core.KindBulk || err != nil || n < *lastp {
			return fmt.Errorf("%s = %v after %d", name, r, *lastp)
		}
		*lastp = n
		return nil
	}
	for step, final := 0, false; ; step++ {
		select {
		case <-done:
			final = true
		default:
		}
		j := (step*7 + g) % keys
		if err := seen(j, read(core.Cmd("GET", "k"+strconv.Itoa(j)))); err != nil {
			return err
		}
		j2 := (j + 5) % keys
		r := read(core.Cmd("MGET", "k"+strconv.Itoa(j), "k"+strconv.Itoa(j2), "nosuchkey"))
		if r.Kind != core.KindArray || len(r.Array) != 3 || r.Array[2].Kind != core.KindNil {
			return fmt.Errorf("MGET: %v", r)
		}
		if err := seen(j, r.Array[0]); err != nil {
			return fmt.Errorf("MGET: %w", err)
		}
		if err := seen(j2, r.Array[1]); err != nil {
			return fmt.Errorf("MGET: %w", err)
		}
		if err := counter("ctr", read(core.Cmd("GET", "ctr")), &lastCtr); err != nil {
			return err
		}
		if err := counter("h.f", read(core.Cmd("HGET", "h", "f")), &lastH); err != nil {
			return err
		}
		e := "e" + strconv.Itoa(step%expired)
		if r := read(core.Cmd("GET", e)); r.Kind != core.KindNil {
			return fmt.Errorf("GET of expired %s: %v", e, r)
		}
		if r := read(core.Cmd("EXISTS", e, "k"+strconv.Itoa(j))); r.Kind != core.KindInt || r.Int > 1 {
			return fmt.Errorf("EXISTS %s k%d: %v", e, j, r)
		}
		if r := read(core.Cmd("TTL", e)); r.Kind != core.KindInt || r.Int != -2 {
			return fmt.Errorf("TTL of expired %s: %v", e, r)
		}
		if r := read(core.Cmd("SET", "k0", "x")); !r.IsError() {
			return fmt.Errorf("Read ran a write: %v", r)
		}
		if final {
			return nil
		}
	}
}
