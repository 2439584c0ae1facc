package netmodel

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Topology places nodes 0..N-1 in regions and zones and says which latency
// distribution a link between two of them follows.
type Topology struct {
	Region, Zone []int // per node
	// Local is the latency within a zone, CrossZone between zones of one
	// region, CrossRegion between regions. Pairs overrides a directed
	// region pair ("0>1") with its own distribution.
	Local, CrossZone, CrossRegion Dist
	Pairs                         map[[2]int]Dist
}

// Spread places n nodes round-robin over regions, and within a region
// round-robin over zonesPerRegion zones. CrossZone defaults to Local
// shifted by 0.5 ms.
func Spread(n, regions, zonesPerRegion int, local, crossRegion Dist) Topology {
	if regions < 1 {
		regions = 1
	}
	if zonesPerRegion < 1 {
		zonesPerRegion = 1
	}
	t := Topology{Region: make([]int, n), Zone: make([]int, n), Local: local,
		CrossZone: Mixture{Weights: []float64{1}, Parts: []Dist{shift{local, 500 * time.Microsecond}}}, CrossRegion: crossRegion}
	for i := 0; i < n; i++ {
		t.Region[i] = i % regions
		t.Zone[i] = (i / regions) % zonesPerRegion
	}
	return t
}

type shift struct {
	d   Dist
	add time.Duration
}

func (s shift) Sample(r *rand.Rand) time.Duration { return s.add + s.d.Sample(r) }
func (s shift) String() string                    { return s.d.String() + "+" + s.add.String() }

// Latency returns the distribution of the link from -> to.
func (t Topology) Latency(from, to int) Dist {
	if from >= len(t.Region) || to >= len(t.Region) {
		return t.Local
	}
	rf, rt := t.Region[from], t.Region[to]
	if d, ok := t.Pairs[[2]int{rf, rt}]; ok {
		return d
	}
	switch {
	case rf != rt:
		return t.CrossRegion
	case t.Zone[from] != t.Zone[to]:
		return t.CrossZone
	}
	return t.Local
}

// Describe renders the placement, e.g. "n1=r0/z0 n2=r1/z0".
func (t Topology) Describe(names []string) string {
	var b strings.Builder
	for i, name := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=r%d/z%d", name, t.Region[i], t.Zone[i])
	}
	return b.String()
}

// Shape names a partition shape.
type Shape string

// The partition shapes.
const (
	Symmetric  Shape = "symmetric"  // two random halves, cut both ways
	Asymmetric Shape = "asymmetric" // two halves; one side's messages to the other are lost, not the reverse
	IsolateOne Shape = "isolate"    // one node cut off from every other
	Minority   Shape = "minority"   // a random minority cut off from the majority
	Bridge     Shape = "bridge"     // two halves that only one bridge node connects
)

// Shapes lists every partition shape.
func Shapes() []Shape { return []Shape{Symmetric, Asymmetric, IsolateOne, Minority, Bridge} }

// Cut is a set of directed links that carry nothing: Cut[from*N+to].
type Cut struct {
	N       int
	Blocked []bool
	Desc    string
}

// Blocks reports whether from -> to is cut.
func (c Cut) Blocks(from, to int) bool { return c.Blocked[from*c.N+to] }

// MakeCut draws a partition of the given shape over n nodes.
func MakeCut(shape Shape, n int, r *rand.Rand) (Cut, error) {
	c := Cut{N: n, Blocked: make([]bool, n*n)}
	if n < 2 {
		c.Desc = string(shape) + " (one node: nothing to cut)"
		return c, nil
	}
	perm := r.Perm(n)
	side := make([]int, n) // 0 or 1
	block := func(a, b int) { c.Blocked[a*n+b] = true }
	switch shape {
	case Symmetric, Asymmetric:
		k := 1 + r.IntN(n-1)
		for _, i := range perm[:k] {
			side[i] = 1
		}
		for a := 0; a < n; a++ {
			for b := 0; b < n; b++ {
				if side[a] != side[b] && (shape == Symmetric || side[a] == 1) {
					block(a, b)
				}
			}
		}
	case IsolateOne:
		side[perm[0]] = 1
		for a := 0; a < n; a++ {
			if a != perm[0] {
				block(a, perm[0])
				block(perm[0], a)
			}
		}
	case Minority:
		k := 1 + r.IntN(max(1, (n-1)/2))
		for _, i := range perm[:k] {
			side[i] = 1
		}
		for a := 0; a < n; a++ {
			for b := 0; b < n; b++ {
				if side[a] != side[b] {
					block(a, b)
				}
			}
		}
	case Bridge:
		if n < 3 {
			return MakeCut(Symmetric, n, r)
		}
		bridge := perm[0]
		side[bridge] = 2
		for j, i := range perm[1:] {
			side[i] = j % 2
		}
		for a := 0; a < n; a++ {
			for b := 0; b < n; b++ {
				if side[a] != 2 && side[b] != 2 && side[a] != side[b] {
					block(a, b)
				}
			}
		}
	default:
		return c, fmt.Errorf("netmodel: unknown partition shape %q (want one of %v)", shape, Shapes())
	}
	c.Desc = describeSides(shape, side, perm)
	return c, nil
}

func describeSides(shape Shape, side, perm []int) string {
	groups := map[int][]int{}
	for i, s := range side {
		groups[s] = append(groups[s], i)
	}
	var parts []string
	for s := 0; s <= 2; s++ {
		if g := groups[s]; len(g) > 0 {
			names := make([]string, len(g))
			for i, n := range g {
				names[i] = "n" + strconv.Itoa(n+1)
			}
			parts = append(parts, "{"+strings.Join(names, ",")+"}")
		}
	}
	d := string(shape) + " " + strings.Join(parts, " | ")
	if shape == Asymmetric && len(parts) == 2 {
		d = string(shape) + " " + parts[1] + " -/-> " + parts[0] + " (one way only)"
	}
	if shape == Bridge {
		d = string(shape) + " " + strings.Join(parts, " ~ ") + " (last group bridges)"
	}
	return d
}

// Fate is what happens to one message.
type Fate struct {
	Held   bool            // the link is clogged: deliver it when unclogged
	Delays []time.Duration // one per copy delivered (none: dropped)
}

// Net is the state of every link between N endpoints: partitions, clogs,
// drop and duplication rates, and latencies from a Topology.
type Net struct {
	N    int
	Topo Topology
	Drop float64 // probability a message is lost
	Dup  float64 // probability a message is delivered twice
	// SpikeP is the probability that a message is slowed by an extra
	// delay drawn from Spike (latency spikes, which reorder messages).
	SpikeP   float64
	Spike    Dist
	cuts     []Cut
	cutIDs   []int
	nextCut  int
	clogged  []bool
	blockedN []int // number of cuts blocking each link
}

// NewNet returns a fully connected network of n endpoints.
func NewNet(n int, topo Topology) *Net {
	return &Net{N: n, Topo: topo, clogged: make([]bool, n*n), blockedN: make([]int, n*n)}
}

// AddCut applies a partition until RemoveCut(id) or Heal.
func (nt *Net) AddCut(c Cut) (id int) {
	nt.nextCut++
	nt.cuts = append(nt.cuts, c)
	nt.cutIDs = append(nt.cutIDs, nt.nextCut)
	for i, b := range c.Blocked {
		if b {
			nt.blockedN[i]++
		}
	}
	return nt.nextCut
}

// RemoveCut removes one partition; it reports whether it was in effect.
func (nt *Net) RemoveCut(id int) bool {
	for j, cid := range nt.cutIDs {
		if cid == id {
			for i, b := range nt.cuts[j].Blocked {
				if b {
					nt.blockedN[i]--
				}
			}
			nt.cuts = slices.Delete(nt.cuts, j, j+1)
			nt.cutIDs = slices.Delete(nt.cutIDs, j, j+1)
			return true
		}
	}
	return false
}

// Heal removes every partition.
func (nt *Net) Heal() {
	nt.cuts = nil
	nt.cutIDs = nil
	clear(nt.blockedN)
}

// SetClog clogs (true) or unclogs the link from -> to.
func (nt *Net) SetClog(from, to int, on bool) { nt.clogged[from*nt.N+to] = on }

// Clogged reports whether from -> to is clogged.
func (nt *Net) Clogged(from, to int) bool { return nt.clogged[from*nt.N+to] }

// UnclogAll sets every link's clog to false (used when faults stop) and
// returns the links that were clogged.
func (nt *Net) UnclogAll() [][2]int {
	var out [][2]int
	for i, c := range nt.clogged {
		if c {
			out = append(out, [2]int{i / nt.N, i % nt.N})
			nt.clogged[i] = false
		}
	}
	return out
}

// Blocked reports whether a partition cuts from -> to.
func (nt *Net) Blocked(from, to int) bool { return nt.blockedN[from*nt.N+to] > 0 }

// Partitioned reports whether any partition is in effect.
func (nt *Net) Partitioned() bool { return len(nt.cuts) > 0 }

// Decide draws the fate of one message from -> to.
func (nt *Net) Decide(from, to int, r *rand.Rand) Fate { return nt.DecideInto(from, to, r, nil) }

// DecideInto is Decide with Fate.Delays appended to buf[:0] (a caller's
// reused buffer of capacity 2 makes it allocation-free).
func (nt *Net) DecideInto(from, to int, r *rand.Rand, buf []time.Duration) Fate {
	if nt.Blocked(from, to) {
		return Fate{}
	}
	if nt.Drop > 0 && r.Float64() < nt.Drop {
		return Fate{}
	}
	if nt.Clogged(from, to) {
		return Fate{Held: true}
	}
	lat := nt.Topo.Latency(from, to)
	f := Fate{Delays: append(buf[:0], nt.sample(lat, r))}
	if nt.Dup > 0 && r.Float64() < nt.Dup {
		f.Delays = append(f.Delays, nt.sample(lat, r))
	}
	return f
}

// Cuts returns the partitions in effect.
func (nt *Net) Cuts() []Cut { return slices.Clone(nt.cuts) }

func (nt *Net) sample(lat Dist, r *rand.Rand) time.Duration {
	d := lat.Sample(r)
	if nt.SpikeP > 0 && nt.Spike != nil && r.Float64() < nt.SpikeP {
		d += nt.Spike.Sample(r)
	}
	return d
}

// ParsePairs reads per-region-pair latencies, "A>B=DIST;C>D=DIST" (region
// numbers from 0; semicolons because distributions contain commas), for
// Topology.Pairs. Regions must be below regions.
func ParsePairs(spec string, regions int) (map[[2]int]Dist, error) {
	out := map[[2]int]Dist{}
	if strings.TrimSpace(spec) == "" {
		return out, nil
	}
	for _, part := range strings.Split(spec, ";") {
		pair, dist, ok := strings.Cut(strings.TrimSpace(part), "=")
		a, b, ok2 := strings.Cut(pair, ">")
		if !ok || !ok2 {
			return nil, fmt.Errorf("netmodel: pair latency %q: want FROM>TO=DIST", part)
		}
		from, err1 := strconv.Atoi(a)
		to, err2 := strconv.Atoi(b)
		if err1 != nil || err2 != nil || from < 0 || to < 0 || from >= regions || to >= regions {
			return nil, fmt.Errorf("netmodel: pair latency %q: regions must be numbers from 0 to %d", part, regions-1)
		}
		d, err := ParseDist(dist)
		if err != nil {
			return nil, err
		}
		out[[2]int{from, to}] = d
	}
	return out, nil
}
