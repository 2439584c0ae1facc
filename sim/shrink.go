package sim

import (
	"fmt"

	"github.com/dialkv/dialkv/sim/simrun"
)

// Shrink reduces a failing run while it keeps failing with the same
// verdict, within budget runs: first the fault list (delta debugging over
// the plan's indices, with the plan's horizon pinned so the remaining
// faults stay the same), then the rate-driven faults (set to 0), then the operation counts and the clients, over
// and over while that helps. The seed never changes. It returns the smallest failing options
// found and their result.
func Shrink(o simrun.Options, want simrun.Verdict, budget int, logf func(string)) (simrun.Options, simrun.Result) {
	o.Out = ""
	runs := 0
	var best simrun.Result
	fails := func(c simrun.Options) (simrun.Result, bool) {
		if runs >= budget {
			return simrun.Result{}, false
		}
		runs++
		oc, err := run(c, false)
		if err != nil {
			return simrun.Result{}, false
		}
		return oc.res, oc.res.Verdict == want
	}
	res, ok := fails(o)
	if !ok {
		logf("the run does not fail as given; nothing to shrink")
		return o, res
	}
	best = res
	o.Horizon = res.Horizon
	if o.KeepFaults == nil {
		o.KeepFaults = make([]int, len(res.FaultPlan))
		for i := range o.KeepFaults {
			o.KeepFaults[i] = i
		}
	}
	// ddmin over the kept faults.
	keep := o.KeepFaults
	n := 2
	for len(keep) >= 1 && runs < budget {
		chunk := (len(keep) + n - 1) / n
		reduced := false
		for start := 0; start < len(keep); start += chunk {
			end := min(start+chunk, len(keep))
			comp := append(append([]int{}, keep[:start]...), keep[end:]...)
			c := o
			c.KeepFaults = comp
			if r, ok := fails(c); ok {
				keep, best = comp, r
				n = max(n-1, 2)
				reduced = true
				logf(fmt.Sprintf("faults: %d left", len(keep)))
				break
			}
		}
		if !reduced {
			if n >= len(keep) {
				break
			}
			n = min(n*2, len(keep))
		}
	}
	o.KeepFaults = keep
	// Switch off the rate-driven faults (loss, duplication, spikes, clock
	// skew) one by one; fixing a rate does not shift the others' draws.
	for _, name := range []string{"drop", "dup", "delay", "skew-ms", "drift-ppm"} {
		if best.Rates[name] <= 0 || runs >= budget {
			continue
		}
		c := o
		c.Rates = map[string]float64{}
		for k, v := range o.Rates {
			c.Rates[k] = v
		}
		c.Rates[name] = 0
		if r, ok := fails(c); ok {
			o, best = c, r
			logf(fmt.Sprintf("%s=0", name))
		}
	}
	// Fewer operations and clients, repeated until nothing more helps.
	try := func(c simrun.Options, what string) bool {
		if r, ok := fails(c); ok {
			o, best = c, r
			logf(what)
			return true
		}
		return false
	}
	for progress := true; progress && runs < budget; {
		progress = false
		for _, f := range []struct{ num, den int }{{1, 2}, {3, 4}, {7, 8}} {
			for o.Ops*f.num/f.den >= 1 && o.Ops*f.num/f.den < o.Ops && runs < budget {
				c := o
				c.Ops = o.Ops * f.num / f.den
				if !try(c, fmt.Sprintf("ops=%d", c.Ops)) {
					break
				}
				progress = true
			}
		}
		for o.LiveOps > 1 && runs < budget {
			c := o
			c.LiveOps = o.LiveOps / 2
			if !try(c, fmt.Sprintf("live-ops=%d", c.LiveOps)) {
				break
			}
			progress = true
		}
		for o.Clients > 1 && runs < budget {
			c := o
			c.Clients = o.Clients - 1
			if !try(c, fmt.Sprintf("clients=%d", c.Clients)) {
				break
			}
			progress = true
		}
	}
	logf(fmt.Sprintf("%d runs", runs))
	return o, best
}
