// Package netmodel models the simulated network: latency distributions
// (constant, uniform, exponential, Pareto and weighted mixtures of them),
// topologies of regions and zones with per-pair latency, partition shapes
// (symmetric, asymmetric one-way, isolate-one, majority/minority, bridge)
// and the link state (partitions, clogged links, drop and duplication
// rates) that decides what becomes of each message.
//
// It is a leaf package: it imports nothing of ours, takes randomness as a
// *rand.Rand and time as durations, and keeps no global state, so both
// package sim and sim/raftsim drive their networks with it.
package netmodel

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Dist is a distribution of durations (one-way latencies).
type Dist interface {
	Sample(r *rand.Rand) time.Duration
	String() string // the spec ParseDist reads back
}

// Constant is always D.
type Constant struct{ D time.Duration }

// Uniform is uniform in [Min, Max].
type Uniform struct{ Min, Max time.Duration }

// Exponential has mean Mean.
type Exponential struct{ Mean time.Duration }

// Pareto has scale (minimum) Scale and shape Alpha (heavier tail for
// smaller Alpha); samples are capped at Cap (default 1000*Scale) so a run
// never waits forever.
type Pareto struct {
	Scale time.Duration
	Alpha float64
	Cap   time.Duration
}

// Mixture draws from Parts[i] with probability Weights[i]/sum(Weights).
type Mixture struct {
	Weights []float64
	Parts   []Dist
}

// Sample implements Dist.
func (c Constant) Sample(*rand.Rand) time.Duration { return c.D }

// Sample implements Dist.
func (u Uniform) Sample(r *rand.Rand) time.Duration {
	if u.Max <= u.Min {
		return u.Min
	}
	return u.Min + time.Duration(r.Int64N(int64(u.Max-u.Min)+1))
}

// Sample implements Dist.
func (e Exponential) Sample(r *rand.Rand) time.Duration {
	return time.Duration(r.ExpFloat64() * float64(e.Mean))
}

// Sample implements Dist.
func (p Pareto) Sample(r *rand.Rand) time.Duration {
	u := 1 - r.Float64() // (0, 1]
	v := float64(p.Scale) / math.Pow(u, 1/p.Alpha)
	c := p.Cap
	if c == 0 {
		c = 1000 * p.Scale
	}
	if v > float64(c) {
		return c
	}
	return time.Duration(v)
}

// Sample implements Dist.
func (m Mixture) Sample(r *rand.Rand) time.Duration {
	total := 0.0
	for _, w := range m.Weights {
		total += w
	}
	x := r.Float64() * total
	for i, w := range m.Weights {
		if x < w {
			return m.Parts[i].Sample(r)
		}
		x -= w
	}
	return m.Parts[len(m.Parts)-1].Sample(r)
}

func (c Constant) String() string    { return "const:" + c.D.String() }
func (u Uniform) String() string     { return "uniform:" + u.Min.String() + "-" + u.Max.String() }
func (e Exponential) String() string { return "exp:" + e.Mean.String() }
func (p Pareto) String() string {
	return "pareto:" + p.Scale.String() + "," + strconv.FormatFloat(p.Alpha, 'g', -1, 64)
}
func (m Mixture) String() string {
	parts := make([]string, len(m.Parts))
	for i, p := range m.Parts {
		parts[i] = strconv.FormatFloat(m.Weights[i], 'g', -1, 64) + "*" + p.String()
	}
	return "mix:" + strings.Join(parts, "+")
}

// ParseDist reads a distribution spec:
//
//	const:1ms                      always 1 ms
//	uniform:1ms-5ms                uniform between 1 and 5 ms
//	exp:2ms                        exponential with mean 2 ms
//	pareto:1ms,1.5                 Pareto with scale 1 ms and shape 1.5
//	mix:0.9*exp:1ms+0.1*pareto:5ms,1.2   a weighted mixture
//
// A bare duration ("3ms") means const.
func ParseDist(spec string) (Dist, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok {
		d, err := time.ParseDuration(spec)
		if err != nil {
			return nil, fmt.Errorf("netmodel: latency %q: want const:D, uniform:A-B, exp:M, pareto:S,ALPHA or mix:W*DIST+...", spec)
		}
		return Constant{d}, nil
	}
	bad := func(err error) (Dist, error) {
		return nil, fmt.Errorf("netmodel: latency %q: %w", spec, err)
	}
	switch kind {
	case "const":
		d, err := parsePos(arg)
		if err != nil {
			return bad(err)
		}
		return Constant{d}, nil
	case "uniform":
		a, b, ok := strings.Cut(arg, "-")
		if !ok {
			return bad(fmt.Errorf("want uniform:MIN-MAX"))
		}
		lo, err := parsePos(a)
		if err != nil {
			return bad(err)
		}
		hi, err := parsePos(b)
		if err != nil {
			return bad(err)
		}
		if hi < lo {
			return bad(fmt.Errorf("max %v below min %v", hi, lo))
		}
		return Uniform{lo, hi}, nil
	case "exp":
		d, err := parsePos(arg)
		if err != nil {
			return bad(err)
		}
		return Exponential{d}, nil
	case "pareto":
		a, b, ok := strings.Cut(arg, ",")
		if !ok {
			return bad(fmt.Errorf("want pareto:SCALE,ALPHA"))
		}
		s, err := parsePos(a)
		if err != nil {
			return bad(err)
		}
		alpha, err := strconv.ParseFloat(b, 64)
		if err != nil || alpha <= 0 {
			return bad(fmt.Errorf("shape %q must be a positive number", b))
		}
		return Pareto{Scale: s, Alpha: alpha}, nil
	case "mix":
		var m Mixture
		for _, part := range strings.Split(arg, "+") {
			w, sub, ok := strings.Cut(part, "*")
			if !ok {
				return bad(fmt.Errorf("mixture part %q: want WEIGHT*DIST", part))
			}
			wf, err := strconv.ParseFloat(w, 64)
			if err != nil || wf < 0 {
				return bad(fmt.Errorf("mixture weight %q must be a non-negative number", w))
			}
			d, err := ParseDist(sub)
			if err != nil {
				return nil, err
			}
			m.Weights = append(m.Weights, wf)
			m.Parts = append(m.Parts, d)
		}
		total := 0.0
		for _, w := range m.Weights {
			total += w
		}
		if total <= 0 {
			return bad(fmt.Errorf("mixture weights sum to zero"))
		}
		return m, nil
	}
	return bad(fmt.Errorf("unknown distribution %q", kind))
}

func parsePos(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %v is negative", d)
	}
	return d, nil
}
