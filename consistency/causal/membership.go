package causal

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Membership is the node list a causal replica shards its regions over, as
// a cluster's member list moves through a change (the three versions of
// nodes.ChangeRing: joint, stream, stable).
//
// The change is made with the namespace paused for clients: from the
// joint version on, every replica refuses new client requests with
// UNAVAILABLE (certainly not executed, safe to retry) while replication
// between regions, dependency checks and the requests already started go
// on under the old list. In the stream version each old owner pushes the
// records of the keys whose owner in its region changes to their new
// owner (the whole record: versions, dependencies, siblings, Seen), and
// pushes a key again whenever it changes before the switch. The driver
// moves to the stable version once every replica reports nothing pending
// (no pushes unacknowledged, no outbound replication, no remote write
// waiting for its dependencies, no request waiting). A replica that came
// through a change stays paused at the stable version until every node of
// both lists has told it that it is at that version with no push
// pending: only then can no request be served by a node that still
// routes by the old list, nor by a new owner that lacks a key's history
// (which could show a write before its dependencies). The old owners
// delete what they handed off once the new owner acknowledged it.
type Membership struct {
	Version uint64
	// Members is the node list (after the change).
	Members []consistency.NodeID
	// Prev is the list before the change while it is under way (joint or
	// stream); nil when the list is stable.
	Prev []consistency.NodeID
	// Stream: the old owners hand off the keys they lose.
	Stream bool
	// RegionOf places every node of Members and Prev in a region
	// (PlaceNodes); nodes must not move between regions, and every
	// region must keep at least one node.
	RegionOf map[consistency.NodeID]string
}

// RingStatus is a causal replica's progress through a membership change.
type RingStatus struct {
	Version uint64
	Phase   string // "stable", "joint" or "stream"
	// Paused: client requests are refused (a change is under way, or it
	// finished here and not yet everywhere).
	Paused bool
	// Pending is what must reach zero on every replica before the change
	// may be committed: Queued + Inflight.
	Pending int
	// Queued are the handoff pushes not acknowledged yet.
	Queued int
	// Inflight is the replication and request work still in progress
	// during a change: outbound replication entries, remote writes
	// waiting for their dependencies, requests waiting for theirs.
	Inflight int
	// Moved counts the handoff pushes acknowledged (this incarnation).
	Moved int
}

// PlaceNodes returns the region of each of nodes: the one the regions spec
// names it in, else extra[node]. An empty spec places every node in
// region "default" unless extra says otherwise. It fails for a node placed
// nowhere, or placed by extra in a region the spec does not have (a
// change must not create a region: the replication entries of past writes
// were made for the regions there were).
func PlaceNodes(spec string, nodes []consistency.NodeID, extra map[consistency.NodeID]string) (map[consistency.NodeID]string, error) {
	named := map[consistency.NodeID]string{}
	known := map[string]bool{"default": strings.TrimSpace(spec) == ""}
	if strings.TrimSpace(spec) != "" {
		for _, part := range strings.Split(spec, ";") {
			name, ns, ok := strings.Cut(strings.TrimSpace(part), ":")
			if !ok || name == "" || ns == "" {
				return nil, fmt.Errorf("causal: region %q: want NAME:NODE,NODE", part)
			}
			known[name] = true
			for _, n := range strings.Split(ns, ",") {
				named[consistency.NodeID(strings.TrimSpace(n))] = name
			}
		}
	}
	out := make(map[consistency.NodeID]string, len(nodes))
	for _, n := range nodes {
		reg, ok := named[n]
		if !ok {
			reg, ok = extra[n]
			if !ok && strings.TrimSpace(spec) == "" {
				reg, ok = "default", true
			}
		}
		switch {
		case !ok || reg == "":
			return nil, fmt.Errorf("causal: node %s is in no region of %q (give it one: dialkv admin add-node --region)", n, spec)
		case !known[reg]:
			return nil, fmt.Errorf("causal: node %s: region %q is not one of the namespace's regions %q", n, reg, spec)
		}
		out[n] = reg
	}
	return out, nil
}

// FormatRegions renders a placement as a regions parameter
// ("NAME:NODE,NODE;..."), regions and nodes sorted.
func FormatRegions(regionOf map[consistency.NodeID]string) string {
	by := map[string][]string{}
	for n, r := range regionOf {
		by[r] = append(by[r], string(n))
	}
	names := make([]string, 0, len(by))
	for r := range by {
		names = append(names, r)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, r := range names {
		sort.Strings(by[r])
		parts[i] = r + ":" + strings.Join(by[r], ",")
	}
	return strings.Join(parts, ";")
}

// buildRegions groups nodes by region, each region's nodes sorted (the
// owner of a key in a region is nodes[fnv1a(key) % len(nodes)]).
func buildRegions(nodes []consistency.NodeID, regionOf map[consistency.NodeID]string) ([]region, error) {
	by := map[string][]consistency.NodeID{}
	for _, n := range nodes {
		reg, ok := regionOf[n]
		if !ok {
			return nil, fmt.Errorf("causal: node %s has no region", n)
		}
		by[reg] = append(by[reg], n)
	}
	out := make([]region, 0, len(by))
	for name, ns := range by {
		sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
		out = append(out, region{name: name, nodes: ns})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func ownerIn(regions []region, reg, key string) consistency.NodeID {
	for _, g := range regions {
		if g.name == reg {
			return g.nodes[fnvKey(key)%uint64(len(g.nodes))]
		}
	}
	return ""
}

func regionNames(rs []region) []string {
	out := make([]string, len(rs))
	for i, g := range rs {
		out[i] = g.name
	}
	return out
}

// push is one key handed off to its new owner.
type push struct {
	to    consistency.NodeID
	v     Version // the record's version when last sent
	acked bool    // to acknowledged v, and the record has not changed since
	sent  time.Time
}

// Message kinds of a membership change.
const (
	kindHandoff    = "handoff"     // old owner -> new owner: a key's whole record
	kindHandoffAck = "handoff-ack" // it is durable there
	kindRingQuery  = "ring-q"      // are you at version ID with no push pending?
	kindRingAnswer = "ring-a"      // ID: my version; Region "done" when stable with no push pending
)

// maxPushes bounds the handoff pushes sent per retry round.
const maxPushes = 1024

// SetMembership hands the replica the cluster's member list (see
// Membership). Versions at or below the one it has are ignored; a list it
// cannot take (a node without a region, a region emptied, a node moving
// between regions) is refused with an error and changes nothing.
func (r *Replica) SetMembership(now time.Time, m Membership) error {
	if m.Version != 0 && m.Version <= r.memVer {
		return nil
	}
	oldIDs, newIDs := m.Prev, m.Members
	changing := len(m.Prev) > 0
	if !changing {
		oldIDs = m.Members
	}
	oldR, err := buildRegions(oldIDs, m.RegionOf)
	if err != nil {
		return err
	}
	newR, err := buildRegions(newIDs, m.RegionOf)
	if err != nil {
		return err
	}
	if cur, o, n := strings.Join(regionNames(r.regions), ","), strings.Join(regionNames(oldR), ","), strings.Join(regionNames(newR), ","); o != n || (cur != o && len(r.regions) > 0) {
		return fmt.Errorf("causal: membership version %d changes the regions (%s -> %s; now %s): regions cannot be added or emptied", m.Version, o, n, cur)
	}
	for n, reg := range m.RegionOf {
		if was, ok := r.regionOf[n]; ok && was != reg {
			return fmt.Errorf("causal: membership version %d moves %s from region %s to %s", m.Version, n, was, reg)
		}
	}
	wasChanging := r.changing
	r.memVer = m.Version
	for n, reg := range m.RegionOf {
		r.regionOf[n] = reg
	}
	all := unionIDs(oldIDs, newIDs)
	// The index behind rank() gains the new nodes after the old ones, so
	// that within this incarnation a version's rank does not change with
	// the list (its node's index only breaks ties of equal clocks).
	for _, n := range all {
		if _, ok := r.index[n]; !ok {
			r.index[n] = len(r.index)
		}
	}
	home := m.RegionOf[r.id]
	if changing {
		// Requests keep being routed by the old list until the switch.
		r.regions, r.next, r.changing, r.paused = oldR, newR, true, true
		r.peers = all
		r.region = home
		r.homeRegion = home
		if m.Stream && !r.streaming {
			r.streaming = true
			if err := r.scanHandoff(home, newR); err != nil {
				return err
			}
		}
		return nil
	}
	r.regions, r.next, r.changing, r.streaming = newR, nil, false, false
	r.peers = newIDs
	r.region = ""
	if contains(newIDs, r.id) {
		r.region = home
	}
	if home == "" {
		home = r.homeRegion // removed: hand off within the region it was in
	}
	if home == "" {
		home = r.regionOf[r.id]
	}
	r.homeRegion = home
	// What this node holds but no longer owns goes to its owner (again:
	// idempotent there) and is deleted once acknowledged; after a restart
	// at the stable version this finds what the last incarnation did not
	// delete yet.
	if err := r.scanHandoff(home, newR); err != nil {
		return err
	}
	r.dropAcked()
	r.confirmed = map[consistency.NodeID]bool{}
	r.waitFor = nil
	if wasChanging {
		// Ordering rule: stay paused until every node of both lists is
		// at this version with its handoff done (see Membership).
		r.paused = true
		for _, n := range all {
			if n != r.id {
				r.waitFor = append(r.waitFor, n)
			}
		}
		r.maybeResume()
	} else {
		r.paused = false
	}
	return nil
}

func unionIDs(a, b []consistency.NodeID) []consistency.NodeID {
	seen := map[consistency.NodeID]bool{}
	var out []consistency.NodeID
	for _, l := range [][]consistency.NodeID{a, b} {
		for _, n := range l {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func contains(l []consistency.NodeID, n consistency.NodeID) bool {
	for _, x := range l {
		if x == n {
			return true
		}
	}
	return false
}

// scanHandoff queues every stored key whose owner in region home under
// regions is another node.
func (r *Replica) scanHandoff(home string, regions []region) error {
	if home == "" {
		return nil
	}
	it := r.eng.NewIter([]byte(prefixValue), []byte("v0"))
	for ok := it.First(); ok; ok = it.Next() {
		key := string(it.Key()[len(prefixValue):])
		to := ownerIn(regions, home, key)
		if to == r.id || to == "" {
			continue
		}
		if p, ok := r.handoff[key]; ok && p.to == to {
			continue
		}
		r.handoff[key] = &push{to: to}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("causal: scan for handoff: %w", err)
	}
	return nil
}

// changed is called after a record of key was stored here: a key being
// handed off is pushed again.
func (r *Replica) changed(key string) {
	if p, ok := r.handoff[key]; ok {
		p.acked = false
		p.sent = time.Time{}
		return
	}
	if !r.streaming && !r.changing {
		return
	}
	if r.streaming {
		if to := ownerIn(r.next, r.region, key); to != r.id && to != "" {
			r.handoff[key] = &push{to: to}
		}
	}
}

// dropAcked deletes, at the stable version, the records handed off and
// acknowledged that did not change since.
func (r *Replica) dropAcked() {
	if r.changing {
		return
	}
	var keys []string
	for k, p := range r.handoff {
		if p.acked {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	sort.Strings(keys)
	b := r.eng.NewBatch()
	defer b.Close()
	for _, k := range keys {
		b.Delete([]byte(prefixValue + k))
	}
	if err := b.Commit(false); err != nil {
		return // kept, and tried again on the next acknowledgement or restart
	}
	for _, k := range keys {
		delete(r.handoff, k)
	}
}

// sendPushes sends the handoff pushes due (at most maxPushes per round).
func (r *Replica) sendPushes(now time.Time) {
	if r.skipHandoff {
		return
	}
	if len(r.handoff) == 0 || (r.changing && !r.streaming) {
		return
	}
	keys := make([]string, 0, len(r.handoff))
	for k, p := range r.handoff {
		if !p.acked && (p.sent.IsZero() || now.Sub(p.sent) >= 4*r.retry) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) > maxPushes {
		keys = keys[:maxPushes]
	}
	for _, k := range keys {
		p := r.handoff[k]
		rec, err := r.load(k)
		if err != nil {
			continue // corrupt: stays unacknowledged (the change cannot finish; see docs/causal.md)
		}
		if rec.V.IsZero() {
			delete(r.handoff, k) // nothing stored any more
			continue
		}
		p.v, p.sent = rec.V, now
		r.send(p.to, msg{Kind: kindHandoff, Entry: &outEntry{Key: k, Rec: rec}})
	}
}

// onHandoff stores a pushed record if it is newer than what this node has
// (a restarted old owner may push an older copy again), and acknowledges
// it once durable.
func (r *Replica) onHandoff(now time.Time, from consistency.NodeID, in msg) {
	e := in.Entry
	if e == nil {
		return
	}
	cur, err := r.load(e.Key)
	if err != nil {
		return // not acknowledged: the sender retries
	}
	r.clock.observe(e.Rec.V)
	for _, v := range e.Rec.Seen {
		r.clock.observe(v)
	}
	if newer(e.Rec, cur, r.siblings) {
		b := r.eng.NewBatch()
		b.Set([]byte(prefixValue+e.Key), sealJSON([]byte(prefixValue+e.Key), e.Rec))
		err := b.Commit(false)
		b.Close()
		if err != nil {
			return
		}
		r.stats.HandoffStored++
		r.recheck(now, e.Key)
	}
	// Ordering rule: acknowledge only what is durable.
	r.out.Sync = true
	v := e.Rec.V
	r.send(from, msg{Kind: kindHandoffAck, Entry: &outEntry{Key: e.Key}, Ver: &v})
}

// newer reports whether a pushed record should replace the stored one:
// under last-writer-wins when its version is greater; in siblings mode
// when it has applied at least what the stored one has from every origin
// node (the old owner applied every write of the key in its region).
func newer(pushed, cur record, siblings bool) bool {
	if cur.V.IsZero() {
		return true
	}
	if !siblings {
		return cur.V.Less(pushed.V)
	}
	more := false
	for _, v := range cur.Seen {
		p := seenOf(pushed.Seen, v.Node)
		if p.Less(v) {
			return false
		}
		if v.Less(p) {
			more = true
		}
	}
	return more || len(pushed.Seen) > len(cur.Seen)
}

func (r *Replica) onHandoffAck(in msg) {
	if in.Entry == nil || in.Ver == nil {
		return
	}
	p, ok := r.handoff[in.Entry.Key]
	if !ok || p.acked || p.v != *in.Ver {
		return
	}
	rec, err := r.load(in.Entry.Key)
	if err != nil || rec.V != p.v {
		p.sent = time.Time{} // changed since: push again
		return
	}
	p.acked = true
	r.stats.HandoffMoved++
	r.dropAcked()
	r.maybeResume()
}

// handoffLeft counts the pushes not acknowledged.
func (r *Replica) handoffLeft() int {
	n := 0
	if r.skipHandoff {
		return 0
	}
	for _, p := range r.handoff {
		if !p.acked {
			n++
		}
	}
	return n
}

// maybeResume ends the pause after a change once every node of both
// lists confirmed the version.
func (r *Replica) maybeResume() {
	if !r.paused || r.changing || r.handoffLeft() > 0 {
		return
	}
	for _, n := range r.waitFor {
		if !r.confirmed[n] {
			return
		}
	}
	r.paused = false
	r.waitFor = nil
}

// onRingQuery answers whether this node is at version q or later with its
// handoff done.
func (r *Replica) onRingQuery(from consistency.NodeID, in msg) {
	state := ""
	if !r.changing && r.handoffLeft() == 0 {
		state = "done"
	}
	r.send(from, msg{Kind: kindRingAnswer, ID: r.memVer, Region: state})
}

func (r *Replica) onRingAnswer(from consistency.NodeID, in msg) {
	if in.ID > r.memVer || (in.ID == r.memVer && in.Region == "done") {
		r.confirmed[from] = true
		r.maybeResume()
	}
}

// ringTick resends pushes and, while paused after a change, asks the
// nodes that have not confirmed it yet.
func (r *Replica) ringTick(now time.Time) {
	r.sendPushes(now)
	if !r.paused || r.changing {
		return
	}
	r.maybeResume()
	for _, n := range r.waitFor {
		if !r.confirmed[n] {
			r.send(n, msg{Kind: kindRingQuery, ID: r.memVer})
		}
	}
}

// errPaused is the reply to a client while the namespace changes members.
func (r *Replica) errPaused() core.Reply {
	if r.region == "" && !r.changing {
		return errReply(consistency.CodeUnavailable, "node %s is not a member of this causal namespace (member list version %d); use a member", r.id, r.memVer)
	}
	return errReply(consistency.CodeUnavailable, "causal namespace paused for a membership change (member list version %d); retry", r.memVer)
}

// RingStatus reports the replica's progress through a membership change.
func (r *Replica) RingStatus() RingStatus {
	s := RingStatus{Version: r.memVer, Phase: "stable", Paused: r.paused, Queued: r.handoffLeft(), Moved: int(r.stats.HandoffMoved)}
	if r.changing {
		s.Phase = "joint"
		if r.streaming {
			s.Phase = "stream"
		}
		s.Inflight = len(r.queue) + len(r.inflight) + len(r.waiters)
	}
	s.Pending = s.Queued + s.Inflight
	return s
}
