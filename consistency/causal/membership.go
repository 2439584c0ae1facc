package causal

import (
	"fmt"
	"slices"
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
// Only the keys that move are paused. Placement is rendezvous hashing
// (ownerIn), so a change of a region's size moves about 1/n of its keys
// and no key moves between two nodes that both stay. From the joint
// version on, a replica refuses client requests for a key whose owner in
// its region changes with UNAVAILABLE (certainly not executed, safe to
// retry), also when such a request started earlier and is executed only
// now (it waited for its dependencies), and the old owner's record of
// such a key is frozen: a remote write of it is left unacknowledged (its
// sender resends it, after the switch to the new owner). Every other key
// is served throughout, routed by the old list, which gives it the same
// owner as the new one. In the stream version each old owner pushes the
// records of the keys it loses to their new owner (the whole record:
// versions, dependencies, siblings, Seen), which merges it into what it
// has (mergeRecords) and acknowledges once durable; the driver moves to
// the stable version once every replica reports no push unacknowledged.
// At the switch every waiting dependency check is re-addressed to the
// owners of the new list (reroute). A replica that came through a change
// keeps refusing the keys that moved until every node of both lists has
// told it that it is at the stable version with no push pending: only
// then can no request for such a key be served by a node that still
// routes by the old list, nor by a new owner that lacks the key's history
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
	// Down (during a change) are nodes of Prev that leave while down
	// (`dialkv admin remove-node ID --down`). Nothing is routed to them
	// from the joint version on: requests, replication and dependency
	// checks go by Prev without them (which for a removal is Members).
	// The keys they owned move as in any change — refused until every
	// node confirmed the stable version, frozen during the change — but
	// their records cannot come from their owner: in the stream version
	// every node of every other region seeds the new owner with its own
	// record of each such key (seed/seed-ack; see onSeed). A region's
	// copy is causally closed, so the new owner stores a seed once the
	// dependencies on keys that do not move are visible in its region
	// (the moving keys' are satisfied by their own seeds, and those keys
	// are refused until all are in). Lost: the writes a down node
	// acknowledged that had not reached another region. With a single
	// region there is no other copy (the node driver refuses).
	Down []consistency.NodeID
}

// RingStatus is a causal replica's progress through a membership change.
type RingStatus struct {
	Version uint64
	Phase   string // "stable", "joint" or "stream"
	// Paused: client requests for the keys that move in this node's
	// region are refused (a change is under way, or it finished here and
	// not yet everywhere); the other keys are served.
	Paused bool
	// Pending is what must reach zero on every replica before the change
	// may be committed: the handoff pushes not acknowledged (Queued).
	Pending int
	// Queued are the handoff pushes not acknowledged yet.
	Queued int
	// Inflight (informational, during a change) is the replication and
	// request work in progress: outbound replication entries, remote
	// writes waiting for their dependencies, requests waiting for theirs.
	// The change does not wait for it: work on a key that moves is
	// refused or left unacknowledged, and resent to the new owner.
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
// owner of a key in a region is chosen among them by ownerIn).
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

// ownerIn returns the owner of key in region reg: the region's node with
// the greatest rendezvous weight (placeWeight) for the key, ties broken by
// the smaller id. Adding a node to a region of n moves only the keys the
// new node now wins (about 1/(n+1) of them); removing one moves only the
// keys it owned. Empty when reg is not one of regions.
func ownerIn(regions []region, reg, key string) consistency.NodeID {
	for _, g := range regions {
		if g.name != reg {
			continue
		}
		kh := fnvKey(key)
		var best consistency.NodeID
		var bestW uint64
		for _, n := range g.nodes { // sorted: the first of equal weights wins
			if w := placeWeight(kh, n); best == "" || w > bestW {
				best, bestW = n, w
			}
		}
		return best
	}
	return ""
}

// placeWeight is the rendezvous (highest-random-weight) weight of a node
// for a key whose FNV-1a hash is kh: FNV-1a of the node id, mixed with kh
// through the SplitMix64 finalizer (FNV alone is too weakly mixed for the
// maximum over nodes to be uniform).
func placeWeight(kh uint64, node consistency.NodeID) uint64 {
	return core.Mix64(kh ^ fnvKey(string(node))*0x9e3779b97f4a7c15)
}

// movedIn reports whether key's owner in region reg differs between the
// placements from and to (a membership change hands the key off).
func movedIn(from, to []region, reg, key string) bool {
	if from == nil || to == nil {
		return false
	}
	return ownerIn(from, reg, key) != ownerIn(to, reg, key)
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
	for _, d := range m.Down {
		if !changing || !contains(m.Prev, d) || contains(m.Members, d) {
			return fmt.Errorf("causal: membership version %d: down node %s must be a previous member that leaves", m.Version, d)
		}
	}
	// Routing during a change: the old list, without the nodes that are
	// down (nothing is asked of them; for a removal that is the new list).
	routeR := oldR
	if len(m.Down) > 0 {
		var up []consistency.NodeID
		for _, n := range oldIDs {
			if !contains(m.Down, n) {
				up = append(up, n)
			}
		}
		if routeR, err = buildRegions(up, m.RegionOf); err != nil {
			return err
		}
		if strings.Join(regionNames(routeR), ",") != strings.Join(regionNames(oldR), ",") {
			return fmt.Errorf("causal: membership version %d: the down nodes %v leave a region empty", m.Version, m.Down)
		}
	}
	wasChanging := r.changing
	oldRouting, oldRegion := r.regions, r.region
	oldFrom := r.moveFrom
	if oldFrom == nil {
		oldFrom = oldRouting
	}
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
		// Requests keep being routed by the old list until the switch;
		// the keys that move are refused (keyPaused) and their records
		// frozen (frozen) from now on.
		r.regions, r.next, r.changing, r.settling, r.prev = routeR, newR, true, false, nil
		r.moveFrom, r.down = oldR, append([]consistency.NodeID(nil), m.Down...)
		r.peers = all
		r.region = home
		r.homeRegion = home
		r.reroute(now, oldRouting, oldRegion)
		if m.Stream && !r.streaming {
			r.streaming = true
			// One scan of the store for both: the keys this node
			// loses and the down nodes' keys it seeds.
			if err := r.scanHandoff(home, newR, true); err != nil {
				return err
			}
		}
		return nil
	}
	r.regions, r.next, r.changing, r.streaming = newR, nil, false, false
	r.moveFrom, r.down, r.seeds = nil, nil, map[string]*push{}
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
	if err := r.scanHandoff(home, newR, false); err != nil {
		return err
	}
	r.dropAcked()
	r.confirmed = map[consistency.NodeID]bool{}
	r.waitFor = nil
	r.settling, r.prev = false, nil
	if wasChanging {
		// Ordering rule: the keys that moved stay refused until every
		// node of both lists is at this version with its handoff done
		// (see Membership).
		r.settling, r.prev = true, oldFrom
		for _, n := range all {
			if n != r.id {
				r.waitFor = append(r.waitFor, n)
			}
		}
		r.maybeResume()
	}
	r.reroute(now, oldRouting, oldRegion)
	return nil
}

// keyPaused reports whether client requests for key are refused: its
// owner in this node's region changes in the change under way, or
// changed in the one just made and not yet confirmed by every node.
func (r *Replica) keyPaused(key string) bool {
	switch {
	case r.rebuilds(key):
		return true // its store is being rebuilt (rebuild.go)
	case r.heldKey(key):
		return true // it waits for a dependency after the rebuild (rebuildhold.go)
	case r.changing:
		return movedIn(r.moveFrom, r.next, r.region, key)
	case r.settling:
		return movedIn(r.prev, r.regions, r.region, key)
	}
	return false
}

// frozen reports whether key's record here must not change: it moves
// in the change under way (its old owner pushes it to the new owner, and
// a remote write of it is left unacknowledged, so that its sender resends
// it to the new owner after the switch). A frozen record needs one push.
func (r *Replica) frozen(key string) bool {
	return (r.changing && movedIn(r.moveFrom, r.next, r.region, key)) || r.rebuilds(key)
}

// reroute re-addresses the dependency checks of every waiter after the
// placement changed from old (in region oldRegion) to the replica's
// current one: the dependencies still unconfirmed — those asked of other
// owners, and those this node owned and checks no more — are asked of
// their owners under the new placement (a dependency this node now owns
// is checked locally). A check left with an owner that no longer owns
// its key would never be answered. A node that left every region
// completes its waiters: their callbacks refuse or drop what they guard.
func (r *Replica) reroute(now time.Time, old []region, oldRegion string) {
	if samePlacement(old, r.regions) && oldRegion == r.region {
		return
	}
	// Replication entries whose destination changed are resent at the
	// next round, not after their backoff: the old owner left them
	// unacknowledged while the key moved.
	for _, seq := range sortedKeys(r.queue) {
		if e := r.queue[seq]; ownerIn(old, e.Region, e.Key) != r.owner(e.Region, e.Key) {
			e.every, e.sent = 0, time.Time{}
		}
	}
	for _, id := range sortedKeys(r.waiters) {
		w, ok := r.waiters[id]
		if !ok {
			continue
		}
		if r.region == "" {
			delete(r.waiters, id)
			w.ready(now, w.stable)
			continue
		}
		owners := make([]consistency.NodeID, 0, len(w.pending))
		for o := range w.pending {
			owners = append(owners, o)
		}
		sort.Slice(owners, func(i, j int) bool { return owners[i] < owners[j] })
		var open []Dep
		for _, o := range owners {
			open = append(open, w.pending[o]...)
		}
		for _, d := range w.deps {
			if oldRegion != "" && ownerIn(old, oldRegion, d.Key) == r.id {
				open = append(open, d)
			}
		}
		w.pending = map[consistency.NodeID][]Dep{}
		for _, d := range open {
			if o := r.owner(r.region, d.Key); o != r.id && !slices.Contains(w.pending[o], d) {
				w.pending[o] = append(w.pending[o], d)
			}
		}
		if len(w.pending) == 0 && r.localReady(w) {
			delete(r.waiters, id)
			w.ready(now, w.stable)
			continue
		}
		w.every = r.retry
		r.sendChecks(now, w)
	}
}

// samePlacement reports whether a and b place every key alike.
func samePlacement(a, b []region) bool {
	return slices.EqualFunc(a, b, func(x, y region) bool { return x.name == y.name && slices.Equal(x.nodes, y.nodes) })
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
// regions is another node; with seeds, it also queues the seeds of the
// down nodes' keys this node holds (seedsOf), in the same scan.
func (r *Replica) scanHandoff(home string, regions []region, seeds bool) error {
	if home == "" {
		return nil
	}
	it := r.eng.NewIter([]byte(prefixValue), []byte("v0"))
	for ok := it.First(); ok; ok = it.Next() {
		key := string(it.Key()[len(prefixValue):])
		if seeds {
			r.seedsOf(home, key)
		}
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
// handed off is pushed again, and a repair of the key is cancelled (the
// record was read and rewritten sound).
func (r *Replica) changed(key string) {
	r.repairWritten(key)
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
	keys := r.due(now, r.handoff)
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
	if e == nil || r.held {
		return // (held: a backup's fence) not acknowledged: the sender retries
	}
	r.observeRecord(e.Rec)
	stored, err := r.storeMerged(now, e.Key, e.Rec)
	if err != nil {
		return // not acknowledged: the sender retries
	}
	if stored {
		r.stats.HandoffStored++
	}
	// Ordering rule: acknowledge only what is durable.
	r.out.Sync = true
	v := e.Rec.V
	r.send(from, msg{Kind: kindHandoffAck, Entry: &outEntry{Key: e.Key}, Ver: &v})
}

// observeRecord moves the clock past every version of another replica's
// record (its greatest and, in siblings mode, each origin's newest).
func (r *Replica) observeRecord(rec record) {
	r.clock.observe(rec.V)
	for _, v := range rec.Seen {
		r.clock.observe(v)
	}
}

// storeMerged merges another replica's record of key (a handoff push, a
// seed) into the stored one and stores the result if it differs; it
// reports whether it stored. Dependencies waiting on the key are
// re-evaluated after a store. An error (the stored record unreadable, the
// commit failed) means nothing was stored: the caller does not
// acknowledge, and the sender resends.
func (r *Replica) storeMerged(now time.Time, key string, rec record) (bool, error) {
	cur, err := r.load(key)
	if err != nil {
		return false, err
	}
	merged, ok := mergeRecords(cur, rec, r.siblings)
	if !ok {
		return false, nil
	}
	b := r.eng.NewBatch()
	b.Set([]byte(prefixValue+key), sealJSON([]byte(prefixValue+key), merged))
	err = b.Commit(false)
	b.Close()
	if err != nil {
		return false, fmt.Errorf("causal: store %q: %w", key, err)
	}
	r.recheck(now, key)
	return true, nil
}

// due returns the ids of the pushes of m (handoff pushes, seeds) to send
// now: not acknowledged, and never sent or not within 4 retries; sorted,
// at most maxPushes.
func (r *Replica) due(now time.Time, m map[string]*push) []string {
	ids := make([]string, 0, len(m))
	for id, p := range m {
		if !p.acked && (p.sent.IsZero() || now.Sub(p.sent) >= 4*r.retry) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	if len(ids) > maxPushes {
		ids = ids[:maxPushes]
	}
	return ids
}

// mergeRecords merges another replica's record of a key (a handoff push,
// a repair's fetch) into the stored one, and reports whether the result
// differs from cur. Under last-writer-wins the greater version wins. In
// siblings mode the records are merged as dotted version vectors: Seen
// takes, per origin node, the newer of the two; a sibling present in one
// record is kept unless the other record has seen its version (Seen) and
// no longer holds it — it was replaced there. This is exact because a
// region applies one origin's writes of a key in order (every write
// depends on its origin's previous one), so Seen[n] >= v means that v was
// applied there. The merge is commutative and idempotent: however a push
// and writes applied at the new owner interleave, nothing either side
// applied is lost.
func mergeRecords(cur, other record, siblings bool) (record, bool) {
	switch {
	case other.V.IsZero():
		return cur, false
	case cur.V.IsZero():
		return other, true
	case !siblings:
		if cur.V.Less(other.V) {
			return other, true
		}
		return cur, false
	}
	holds := func(sibs []record, v Version) bool {
		return slices.ContainsFunc(sibs, func(s record) bool { return s.V == v })
	}
	keep := func(s record, o record) bool { return holds(o.Sibs, s.V) || seenOf(o.Seen, s.V.Node).Less(s.V) }
	out := record{}
	for _, s := range cur.Sibs {
		if keep(s, other) {
			out.Sibs = append(out.Sibs, s)
		}
	}
	for _, s := range other.Sibs {
		if !holds(cur.Sibs, s.V) && keep(s, cur) {
			out.Sibs = append(out.Sibs, s)
		}
	}
	sort.Slice(out.Sibs, func(i, j int) bool { return out.Sibs[i].V.Less(out.Sibs[j].V) })
	out.Seen = append([]Version(nil), cur.Seen...)
	out = seeAll(out, other.Seen)
	return out, string(mustJSON(out)) != string(mustJSON(cur))
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
	for _, m := range []map[string]*push{r.handoff, r.seeds} {
		for _, p := range m {
			if !p.acked {
				n++
			}
		}
	}
	return n
}

// maybeResume ends the pause after a change once every node of both
// lists confirmed the version.
func (r *Replica) maybeResume() {
	if !r.settling || r.changing || r.handoffLeft() > 0 {
		return
	}
	for _, n := range r.waitFor {
		if !r.confirmed[n] {
			return
		}
	}
	r.settling, r.prev = false, nil
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

// ringTick resends pushes and seeds and, while paused after a change,
// asks the nodes that have not confirmed it yet.
func (r *Replica) ringTick(now time.Time) {
	r.sendPushes(now)
	r.sendSeeds(now)
	if !r.settling || r.changing {
		return
	}
	r.maybeResume()
	for _, n := range r.waitFor {
		if !r.confirmed[n] {
			r.send(n, msg{Kind: kindRingQuery, ID: r.memVer})
		}
	}
}

// errPaused is the reply to a client whose key moves in a membership
// change (or that asked a node that is not a member).
func (r *Replica) errPaused(key string) core.Reply {
	if r.rebuilds(key) {
		r.noteRefused(key)
		return errReply(consistency.CodeUnavailable, "the store of node %s is being rebuilt from the other regions after corruption; key %q is served again once it is; retry", r.id, key)
	}
	if r.heldKey(key) {
		return errReply(consistency.CodeUnavailable, "the store of node %s was rebuilt after corruption and key %q waits for a write (of it, or one it depends on) that another rebuilding region still holds; retry", r.id, key)
	}
	if r.region == "" && !r.changing {
		return errReply(consistency.CodeUnavailable, "node %s is not a member of this causal namespace (member list version %d); use a member", r.id, r.memVer)
	}
	return errReply(consistency.CodeUnavailable, "key %q moves to another node in a membership change of this causal namespace (member list version %d); retry", key, r.memVer)
}

// RingStatus reports the replica's progress through a membership change.
func (r *Replica) RingStatus() RingStatus {
	s := RingStatus{Version: r.memVer, Phase: "stable", Paused: r.changing || r.settling, Queued: r.handoffLeft(), Moved: int(r.stats.HandoffMoved + r.stats.Seeded)}
	if r.changing {
		s.Phase = "joint"
		if r.streaming {
			s.Phase = "stream"
		}
		s.Inflight = len(r.queue) + len(r.inflight) + len(r.waiters)
	}
	s.Pending = s.Queued
	return s
}
