package faults

import (
	"time"

	"github.com/dialkv/dialkv/sim/netmodel"
	"github.com/dialkv/dialkv/sim/simrun"
)

// Setup is what a run derives from its options before it starts: the fault
// kinds, their swarm-drawn rates, the latency model and the timed fault plan.
type Setup struct {
	Kinds       []Kind
	Rates       Rates
	Latency     netmodel.Dist // one-way latency within a region
	CrossRegion netmodel.Dist // one-way latency between regions
	Horizon     time.Duration // virtual time the fault plan spans
	Plan        Plan          // already cut down to opts.KeepFaults
}

// Prepare derives a run's Setup from its options. The rates and the plan
// come from the seed's "rates" and "plan" streams, so every driver (package
// sim and sim/raftsim) draws the same faults for the same options.
func Prepare(opts simrun.Options) (Setup, error) {
	var s Setup
	var err error
	if s.Kinds, err = ParseKinds(opts.Faults); err != nil {
		return s, err
	}
	if s.Rates, err = DrawRates(s.Kinds, opts.Rates, simrun.NewRand(opts.Seed, "rates")); err != nil {
		return s, err
	}
	if s.Latency, err = netmodel.ParseDist(opts.Latency); err != nil {
		return s, err
	}
	if s.CrossRegion, err = netmodel.ParseDist(opts.CrossRegion); err != nil {
		return s, err
	}
	s.Horizon = opts.Horizon
	if s.Horizon <= 0 {
		// Long enough for every client's share of the operations at the
		// mean think time plus a few milliseconds of service each.
		s.Horizon = max(time.Duration(opts.Ops/max(opts.Clients, 1)+1)*(opts.Think+5*time.Millisecond), time.Second)
	}
	if s.Plan, err = Draw(s.Kinds, s.Rates, opts.Nodes, s.Horizon, simrun.NewRand(opts.Seed, "plan")); err != nil {
		return s, err
	}
	s.Plan = s.Plan.Keep(opts.KeepFaults)
	return s, nil
}
