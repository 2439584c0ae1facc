package sim

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/sim/simrun"
)

// insomniac hides a replica's consistency.Sleeper: the simulator then
// ticks it at every grid point, as before sleeping replicas existed.
type insomniac struct{ consistency.Replica }

// TestSleeperSkipsOnlyNoOpTicks runs primary-backup (a consistency.Sleeper)
// twice per setup: as it is, with tick events only where its NextTick says
// a Tick may matter, and wrapped so that it is ticked at every grid point.
// Histories and traces must be byte-identical (the skipped ticks are
// exactly the no-ops), and the sleeping run must process fewer events (or
// the test proves nothing). Setups cover crashes and restarts, pauses,
// clock skew and drift, I/O errors and slow clients.
func TestSleeperSkipsOnlyNoOpTicks(t *testing.T) {
	t.Parallel()
	s, ok := lookup("primary-backup")
	if !ok {
		t.Fatal("no primary-backup strategy")
	}
	awake := s
	awake.Factory = func(cfg consistency.Config) (consistency.Replica, error) {
		rep, err := s.Factory(cfg)
		if err != nil {
			return nil, err
		}
		return insomniac{rep}, nil
	}
	setups := []simrun.Options{
		{Seed: 1, Nodes: 5, Ops: 600, Faults: []string{"all"}},
		{Seed: 2, Nodes: 3, Ops: 600, Faults: []string{"pause", "crash", "ioerr"}, Rates: map[string]float64{"pause/s": 5, "crash/s": 3, "ioerr/s": 4}},
		{Seed: 3, Nodes: 5, Ops: 300, Faults: []string{"skew"}, Rates: map[string]float64{"skew-ms": 400, "drift-ppm": 1000}},
		{Seed: 4, Nodes: 5, Ops: 300, Workload: "register", Think: 100 * time.Millisecond, LivenessBound: time.Minute},
	}
	for _, o := range setups {
		o.Strategy = s.Name
		t.Run(fmt.Sprint(o.Seed), func(t *testing.T) {
			a, err := runSansIO(o, s, true)
			if err != nil {
				t.Fatal(err)
			}
			b, err := runSansIO(o, awake, true)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.history, b.history) || !bytes.Equal(a.trace, b.trace) {
				t.Errorf("ticking every grid point changed the run (history same: %v, trace same: %v)\nreproduce: go test -run 'TestSleeperSkipsOnlyNoOpTicks/%d$' ./sim (the run: %s)",
					bytes.Equal(a.history, b.history), bytes.Equal(a.trace, b.trace), o.Seed, o.Command())
			}
			if a.res.Events >= b.res.Events {
				t.Errorf("sleeping run processed %d events, ticking every grid point %d: nothing was skipped", a.res.Events, b.res.Events)
			}
			t.Logf("events: %d sleeping, %d ticking every grid point", a.res.Events, b.res.Events)
		})
	}
}
