package nodes

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/transport"
)

// RingChange asks ChangeRing to add or remove one member.
type RingChange struct {
	Add    *ClusterPeer // the node to add (running, started with --join)
	Remove string       // the id of the member to remove (decommission)
	// Down, with Remove, removes a member that is down: the change does
	// not wait for it (it must not answer), the quorum namespaces hand
	// its keys off from the surviving replicas' copies, and the causal
	// namespaces seed its keys' new owners from the other regions'
	// owners (refused for a causal namespace with a single region: there
	// is no other copy).
	Down bool
	// Settle is the pause after every node entered the joint phase and
	// before the stream starts, so that requests coordinated under the
	// old ring have ended (longer than the namespaces' request timeout);
	// default 2s. It is skipped when every namespace that follows the
	// ring is causal: a causal replica refuses a request for a key that
	// moves when it would execute it, so nothing started under the old
	// list has to end first.
	Settle time.Duration
	// Poll is how often the handoff's progress is asked; default 200ms.
	Poll time.Duration
	// Log, if set, gets one line per step.
	Log func(format string, args ...any)
}

// RingChangeResult reports a finished change.
type RingChangeResult struct {
	From, To Membership
	// Moved counts the objects the old owners pushed to new owners and
	// that were acknowledged (summed over nodes and namespaces).
	Moved int
	// Offered counts the quorum offers (handoff=one) a new owner answered
	// with "I have that copy" (objects not sent), and Bytes what the
	// pushes and offers weighed (message bodies), summed likewise.
	Offered int
	Bytes   int64
	// Stream is the time from the start of the stream to every node
	// reporting its handoff done; Total the whole change.
	Stream, Total time.Duration
	// CausalPause (with causal namespaces) is the time from the joint
	// version to every node's causal replicas serving the keys that
	// moved again: they refuse requests for those keys meanwhile (the
	// other keys are served throughout).
	CausalPause time.Duration
}

// ChangeRing moves the cluster that seed (a member's client API address)
// belongs to from its member list to the one with ch applied: joint, then
// (after ch.Settle) stream, then — once every node of both lists reports
// no pending handoff in every quorum and causal namespace — stable; with
// causal namespaces it then waits until they serve clients again. Every node of
// both lists must be up, except a removed one with ch.Down; a step that
// fails leaves the cluster in its phase (requests keep being served), and
// running ChangeRing again resumes it. ctx bounds the whole change.
func ChangeRing(ctx context.Context, seed string, dopts transport.DialOptions, ch RingChange) (RingChangeResult, error) {
	var res RingChangeResult
	start := time.Now()
	if ch.Settle <= 0 {
		ch.Settle = 2 * time.Second
	}
	if ch.Poll <= 0 {
		ch.Poll = 200 * time.Millisecond
	}
	logf := ch.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if (ch.Add == nil) == (ch.Remove == "") {
		return res, errors.New("ring change: give exactly one of add and remove")
	}
	if ch.Down && ch.Remove == "" {
		return res, errors.New("ring change: down applies to remove only")
	}
	rep, err := ringAtCtx(ctx, seed, dopts)
	if err != nil {
		return res, err
	}
	cur := rep.Membership
	res.From = cur
	var next []ClusterPeer
	var down []string
	if cur.Phase != PhaseStable {
		// An earlier change stopped half-way: finish it first.
		logf("a change to version %d is under way (phase %s): finishing it", cur.Version, cur.Phase)
		next, down = cur.Members, cur.Down
		cur = Membership{Version: cur.Version, Members: cur.Prev}
	} else {
		switch {
		case ch.Add != nil:
			if hasPeer(cur.Members, ch.Add.ID) {
				return res, fmt.Errorf("ring change: %s is already a member", ch.Add.ID)
			}
			next = append(append([]ClusterPeer(nil), cur.Members...), *ch.Add)
		default:
			if !hasPeer(cur.Members, ch.Remove) {
				return res, fmt.Errorf("ring change: %s is not a member", ch.Remove)
			}
			for _, p := range cur.Members {
				if p.ID != ch.Remove {
					next = append(next, p)
				}
			}
			if len(next) == 0 {
				return res, errors.New("ring change: cannot remove the last member")
			}
			if ch.Down {
				down = []string{ch.Remove}
			}
		}
	}
	sort.Slice(next, func(i, j int) bool { return next[i].ID < next[j].ID })
	all := Membership{Members: next, Prev: cur.Members, Down: down}.up()
	for _, d := range down {
		// A node removed as down must be down: one that answers would
		// keep serving a ring it left without handing its keys off.
		for _, p := range cur.Members {
			if p.ID != d {
				continue
			}
			if _, err := ringAtCtx(ctx, p.Client, dopts); err == nil {
				return res, fmt.Errorf("ring change: %s answers at %s: it is not down (remove it without --down; it hands its keys off itself)", d, p.Client)
			}
		}
	}
	nss := rep.Namespaces
	causalNS := false
	seeded := map[string]bool{} // causal namespaces checked for a removal while down
	onlyCausal := true
	for _, st := range nss {
		onlyCausal = onlyCausal && st.Strategy == "causal"
	}

	// Every node must be up and host every quorum namespace (a new node
	// pulls the catalog every few seconds).
	for _, p := range all {
		specs, err := listAt(p.Client, dopts)
		if err != nil {
			hint := ""
			if p.ID == ch.Remove {
				hint = fmt.Sprintf(" (if %s is down for good: remove it with --down, its keys are handed off from the other replicas)", p.ID)
			}
			return res, fmt.Errorf("ring change: every node of both lists must be up: %s: %w%s", p.ID, err, hint)
		}
		for _, sp := range specs {
			if sp.Strategy != "causal" {
				continue
			}
			// Every node of both lists needs a region of every causal
			// namespace (a new one: --region), checked before any node
			// moves.
			cm, err := causalMembership(Membership{Version: 1, Phase: PhaseJoint, Members: next, Prev: cur.Members}, sp.Params["regions"])
			if err != nil {
				return res, fmt.Errorf("ring change refused: causal namespace %s: %w", sp.Name, err)
			}
			if len(down) > 0 && !seeded[sp.Name] {
				seeded[sp.Name] = true
				// A causal key has one owner per region: the keys of a
				// node that is down come from the other regions' owners
				// (docs/causal.md, "Membership"). With one region there
				// is no other copy.
				regions := map[string]bool{}
				for _, r := range cm.RegionOf {
					regions[r] = true
				}
				if len(regions) < 2 {
					return res, fmt.Errorf("ring change refused: causal namespace %s has a single region, so the keys %s owned have no other copy (a causal region does not replicate within itself): removing it while down would lose them; restart %s (or restore it from a backup) and remove it without --down", sp.Name, down[0], down[0])
				}
				logf("causal namespace %s: the keys %s owned are seeded from the other regions; the writes it acknowledged that had not reached another region are lost", sp.Name, down[0])
			}
			causalNS = true
		}
		for {
			r, err := ringAtCtx(ctx, p.Client, dopts)
			if err != nil {
				return res, fmt.Errorf("ring change: every node of both lists must be up: %w", err)
			}
			missing := ""
			for ns := range nss {
				if _, ok := r.Namespaces[ns]; !ok {
					missing = ns
				}
			}
			if missing == "" {
				break
			}
			logf("waiting for %s to open namespace %s", p.ID, missing)
			if err := sleepCtx(ctx, time.Second); err != nil {
				return res, fmt.Errorf("ring change: %s does not host namespace %s: %w", p.ID, missing, err)
			}
		}
	}
	push := func(m Membership) error {
		for _, p := range all {
			v, err := setRingAtCtx(ctx, p.Client, dopts, m)
			if err != nil {
				return fmt.Errorf("ring change: %s to version %d at %s: %w (re-run to resume)", m.Phase, m.Version, p.ID, err)
			}
			if v < m.Version {
				return fmt.Errorf("ring change: %s has version %d after being sent %d", p.ID, v, m.Version)
			}
		}
		logf("version %d (%s) taken by %d nodes", m.Version, m.Phase, len(all))
		return nil
	}
	v := max(rep.Membership.Version, cur.Version)
	pauseStart := time.Now()
	if rep.Membership.Phase != PhaseStream {
		v++
		if err := push(Membership{Version: v, Phase: PhaseJoint, Members: next, Prev: cur.Members, Down: down}); err != nil {
			return res, err
		}
		if !onlyCausal {
			if err := sleepCtx(ctx, ch.Settle); err != nil {
				return res, err
			}
		}
	}
	_, base, _, err := handoffLeft(ctx, all, dopts, nss, 0)
	if err != nil {
		return res, err
	}
	v++
	streamStart := time.Now()
	if err := push(Membership{Version: v, Phase: PhaseStream, Members: next, Prev: cur.Members, Down: down}); err != nil {
		return res, err
	}
	for {
		pending, sum, detail, err := handoffLeft(ctx, all, dopts, nss, v)
		if err != nil {
			return res, err
		}
		if pending == 0 {
			// The counters count since each replica started.
			res.Moved, res.Offered, res.Bytes = sum.Moved-base.Moved, sum.Offered-base.Offered, sum.Bytes-base.Bytes
			break
		}
		logf("handoff: %d pending (%s)", pending, detail)
		if err := sleepCtx(ctx, ch.Poll); err != nil {
			return res, fmt.Errorf("ring change: handoff not done (%d pending): %w (re-run to resume)", pending, err)
		}
	}
	res.Stream = time.Since(streamStart)
	v++
	final := Membership{Version: v, Phase: PhaseStable, Members: next}
	if err := push(final); err != nil {
		return res, err
	}
	res.To = final
	if causalNS {
		// Causal namespaces refuse the keys that move from the joint
		// version until every node confirmed the stable one
		// (docs/causal.md, "Membership"): wait for that and report the
		// pause.
		for {
			paused, err := pausedAt(ctx, all, dopts)
			if err != nil {
				return res, err
			}
			if paused == "" {
				break
			}
			logf("waiting for causal namespaces to resume: %s", paused)
			if err := sleepCtx(ctx, ch.Poll); err != nil {
				return res, fmt.Errorf("ring change: causal namespaces still paused (%s): %w", paused, err)
			}
		}
		res.CausalPause = time.Since(pauseStart)
	}
	res.Total = time.Since(start)
	return res, nil
}

// pausedAt lists the causal namespaces still paused, as NODE/NAMESPACE.
func pausedAt(ctx context.Context, all []ClusterPeer, dopts transport.DialOptions) (string, error) {
	var parts []string
	for _, p := range all {
		r, err := ringAtCtx(ctx, p.Client, dopts)
		if err != nil {
			return "", fmt.Errorf("ring change: status at %s: %w (re-run to resume)", p.ID, err)
		}
		for ns, st := range r.Namespaces {
			if st.Paused {
				parts = append(parts, p.ID+"/"+ns)
			}
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, " "), nil
}

// handoffLeft sums, over the nodes, the pending handoff of every quorum
// namespace at ring version v (a replica not there yet counts as 1), and
// their counters (Moved, Offered, Bytes).
func handoffLeft(ctx context.Context, all []ClusterPeer, dopts transport.DialOptions, nss map[string]quorum.RingStatus, v uint64) (pending int, sum quorum.RingStatus, detail string, err error) {
	var parts []string
	for _, p := range all {
		r, err := ringAtCtx(ctx, p.Client, dopts)
		if err != nil {
			return 0, sum, "", fmt.Errorf("ring change: handoff status at %s: %w (re-run to resume)", p.ID, err)
		}
		for ns := range nss {
			st, ok := r.Namespaces[ns]
			switch {
			case !ok || st.Version < v:
				pending++
				parts = append(parts, fmt.Sprintf("%s/%s: not at version %d", p.ID, ns, v))
			default:
				pending += st.Pending
				sum.Moved += st.Moved
				sum.Offered += st.Offered
				sum.Bytes += st.Bytes
				if st.Pending > 0 {
					parts = append(parts, fmt.Sprintf("%s/%s: %d queued, %d in flight, %d hints", p.ID, ns, st.Queued, st.Inflight, st.Hints))
				}
			}
		}
	}
	sort.Strings(parts)
	return pending, sum, strings.Join(parts, "; "), nil
}

func ringAtCtx(ctx context.Context, addr string, dopts transport.DialOptions) (RingReport, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return RingAt(c, addr, dopts)
}

func setRingAtCtx(ctx context.Context, addr string, dopts transport.DialOptions, m Membership) (uint64, error) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return SetRingAt(c, addr, dopts, m)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
