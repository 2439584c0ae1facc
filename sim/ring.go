package sim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/sim/simrun"
)

// ringSetter is a replica that follows a changing ring (quorum.Replica).
type ringSetter interface {
	SetRing(now time.Time, s quorum.RingState) error
	RingStatus() quorum.RingStatus
}

var _ ringSetter = (*quorum.Replica)(nil)

// ringPoll is how often the driver asks the replicas for their handoff
// progress (nodes.ChangeRing polls every 200ms on real clusters; a finer
// poll gives the virtual times a finer grain).
const ringPoll = 50 * time.Millisecond

// ringStep is one planned change: add or remove node idx.
type ringStep struct {
	add bool
	idx int
}

// ringDriver changes a quorum run's ring the way nodes.ChangeRing does on
// real clusters: every node takes the joint state, then, after settle
// (longer than the replicas' request timeout, so requests coordinated
// under the old ring have ended), the stream state, then — once every
// replica reports no pending handoff at the stream's version — the stable
// state. Each state is handed to every node at one virtual instant, and
// only when every node is up and not paused (ChangeRing needs every node
// of both lists up; a step that cannot run waits a poll and retries), so
// no node takes a state before all took the one before. A node that
// restarts gets the current state (a real node reads it from its
// members.json).
type ringDriver struct {
	steps   []ringStep
	next    int  // the step to run next (or running)
	busy    bool // a change is under way
	cur     quorum.RingState
	settle  time.Duration
	results []simrun.RingChange
	moved0  int // moved (folded + live) when the stream started
	folded  int // Moved of replicas that crashed
}

// parseRingChange validates o.RingChange and plans its steps; nil when the
// run changes no ring.
func parseRingChange(o simrun.Options, strat Strategy, peers []consistency.NodeID) (*ringDriver, error) {
	if o.RingChange == "" {
		return nil, nil
	}
	if strat.Name != "quorum" {
		return nil, fmt.Errorf("sim: --ring-change needs --strategy quorum (got %s)", strat.Name)
	}
	n, timeout := 3, time.Second
	if v, ok := o.Params["n"]; ok {
		if x, err := strconv.Atoi(v); err == nil {
			n = x
		}
	}
	if v, ok := o.Params["timeout"]; ok {
		if d, err := time.ParseDuration(v); err == nil {
			timeout = d
		}
	}
	rnd := simrun.NewRand(o.Seed, "ring-change")
	members := slices.Clone(peers)
	d := &ringDriver{settle: 2 * timeout}
	for i, k := range strings.Split(o.RingChange, ",") {
		switch k {
		case "add":
			if i > 0 {
				return nil, fmt.Errorf("sim: --ring-change %q: add must come first (the node added is the last one, started outside the ring)", o.RingChange)
			}
			members = members[:len(members)-1]
			d.steps = append(d.steps, ringStep{add: true, idx: len(peers) - 1})
		case "remove":
			d.steps = append(d.steps, ringStep{idx: -1}) // drawn below
		default:
			return nil, fmt.Errorf("sim: --ring-change %q: want add, remove or add,remove", o.RingChange)
		}
	}
	if len(d.steps) > 2 {
		return nil, fmt.Errorf("sim: --ring-change %q: want add, remove or add,remove", o.RingChange)
	}
	d.cur = quorum.RingState{Version: 1, Members: slices.Clone(members)}
	// Plan the victims and check every ring is big enough for n.
	ring := slices.Clone(members)
	for i := range d.steps {
		s := &d.steps[i]
		if s.add {
			ring = append(ring, peers[s.idx])
			continue
		}
		victim := ring[rnd.IntN(len(ring))]
		s.idx = slices.Index(peers, victim)
		ring = slices.DeleteFunc(ring, func(x consistency.NodeID) bool { return x == victim })
		if len(ring) < n {
			return nil, fmt.Errorf("sim: --ring-change %q with --nodes %d leaves %d members, fewer than the replication factor n=%d", o.RingChange, len(peers), len(ring), n)
		}
	}
	if len(members) < n {
		return nil, fmt.Errorf("sim: --ring-change %q with --nodes %d starts with %d members, fewer than the replication factor n=%d (use --nodes %d)", o.RingChange, len(peers), len(members), n, n+1)
	}
	return d, nil
}

// begin starts the next planned change (the joint state).
func (r *runner) ringBegin() {
	d := r.ringc
	if d.busy || d.next >= len(d.steps) || r.stopped {
		return
	}
	if !r.ringAllUp() {
		r.at(int64(ringPoll), r.ringBegin)
		return
	}
	s := d.steps[d.next]
	prev := slices.Clone(d.cur.Members)
	id := r.nodes[s.idx].id
	var next []consistency.NodeID
	kind := "remove"
	if s.add {
		kind = "add"
		next = append(slices.Clone(prev), id)
	} else {
		next = slices.DeleteFunc(slices.Clone(prev), func(x consistency.NodeID) bool { return x == id })
	}
	slices.Sort(next)
	d.busy = true
	d.results = append(d.results, simrun.RingChange{Kind: kind, Node: string(id), From: idStrings(prev), To: idStrings(next),
		StartNS: r.now, StreamNS: -1, StreamEndNS: -1, StableNS: -1})
	r.ringPush(quorum.RingState{Version: d.cur.Version + 1, Members: next, Prev: prev}, "joint")
	r.at(int64(d.settle), r.ringStream)
}

// ringStream hands out the stream state (after the settle pause).
func (r *runner) ringStream() {
	d := r.ringc
	if r.stopped {
		return
	}
	if !r.ringAllUp() {
		r.at(int64(ringPoll), r.ringStream)
		return
	}
	d.moved0 = r.ringMoved()
	st := d.cur
	st.Version++
	st.Stream = true
	r.ringPush(st, "stream")
	d.results[len(d.results)-1].StreamNS = r.now
	r.at(int64(ringPoll), r.ringWait)
}

// ringWait polls the replicas' handoff until every one, at the stream's
// version, reports nothing pending; then hands out the stable state.
func (r *runner) ringWait() {
	d := r.ringc
	if r.stopped {
		return
	}
	pending := 0
	for _, n := range r.nodes {
		if n.rep == nil || n.paused {
			pending++ // cannot be asked: not done
			continue
		}
		st := n.rep.(ringSetter).RingStatus()
		if st.Version != d.cur.Version {
			pending++
			continue
		}
		pending += st.Pending
	}
	if pending > 0 || !r.ringAllUp() {
		r.at(int64(ringPoll), r.ringWait)
		return
	}
	res := &d.results[len(d.results)-1]
	res.StreamEndNS = r.now
	res.Moved = r.ringMoved() - d.moved0
	r.ringPush(quorum.RingState{Version: d.cur.Version + 1, Members: d.cur.Members}, "stable")
	res.StableNS = r.now
	d.busy = false
	d.next++
	if d.next < len(d.steps) {
		r.at(int64(ringPoll), r.ringBegin)
	}
}

// ringAllUp reports whether every node is up and not paused.
func (r *runner) ringAllUp() bool {
	for _, n := range r.nodes {
		if n.rep == nil || n.paused {
			return false
		}
	}
	return true
}

// ringMoved sums the objects moved so far over the replicas and their
// incarnations.
func (r *runner) ringMoved() int {
	m := r.ringc.folded
	for _, n := range r.nodes {
		if n.rep != nil {
			m += n.rep.(ringSetter).RingStatus().Moved
		}
	}
	return m
}

// ringPush hands every node state s (every node is up: see ringAllUp).
func (r *runner) ringPush(s quorum.RingState, phase string) {
	r.ringc.cur = s
	if r.trace != nil {
		r.tracef("sim", "ring", "version %d (%s) members=%v prev=%v", s.Version, phase, s.Members, s.Prev)
	}
	for _, n := range r.nodes {
		r.ringApply(n)
	}
}

// ringApply hands node n the current ring state.
func (r *runner) ringApply(n *node) {
	rs, ok := n.rep.(ringSetter)
	if !ok {
		return
	}
	if err := rs.SetRing(n.clock(r.now), r.ringc.cur); err != nil {
		r.problems = append(r.problems, fmt.Sprintf("ring version %d at %s: %v", r.ringc.cur.Version, n.id, err))
		return
	}
	r.drain(n)
}

// ringDone reports whether every planned change is done (true without
// one).
func (r *runner) ringDone() bool {
	return r.ringc == nil || (!r.ringc.busy && r.ringc.next >= len(r.ringc.steps))
}

// ringDuring counts a completed operation against the change under way.
func (r *runner) ringDuring(ok bool) {
	if r.ringc == nil || !r.ringc.busy {
		return
	}
	res := &r.ringc.results[len(r.ringc.results)-1]
	res.OpsDuring++
	if ok {
		res.OKDuring++
	}
}

func (r *runner) ringText() string {
	if r.ringDone() {
		return ""
	}
	d := r.ringc
	return fmt.Sprintf(", ring change %d/%d not done (version %d, stream=%v)", d.next+1, len(d.steps), d.cur.Version, d.cur.Stream)
}

// RingChangeLine renders a ring change's times (virtual, since the start
// of the run) on one line.
func RingChangeLine(c simrun.RingChange) string {
	at := func(ns int64) string {
		if ns < 0 {
			return "never"
		}
		return time.Duration(ns).Round(time.Millisecond).String()
	}
	stream, total := "-", "-"
	if c.StreamEndNS >= 0 {
		stream = time.Duration(c.StreamEndNS - c.StreamNS).Round(time.Millisecond).String()
	}
	if c.StableNS >= 0 {
		total = time.Duration(c.StableNS - c.StartNS).Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%s %s %v -> %v: joint at %s, stream at %s, stream done at %s, stable at %s (stream %s, total %s), %d objects moved, %d/%d ops ok during",
		c.Kind, c.Node, c.From, c.To, at(c.StartNS), at(c.StreamNS), at(c.StreamEndNS), at(c.StableNS), stream, total, c.Moved, c.OKDuring, c.OpsDuring)
}
