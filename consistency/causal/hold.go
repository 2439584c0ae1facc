package causal

import (
	"fmt"
	"sort"
	"time"

	"github.com/dialkv/dialkv/core"
)

// HoldRemote starts (hold true) or ends a hold on the records of this
// replica, for a cluster backup's cut (nodes: the write fence,
// docs/operations.md "One instant"). While held, nothing changes a record
// here except this node's own client writes (which the fence stops): a
// remote write or a repaired record whose dependencies are visible waits
// and is applied at the release, in order; a handoff push is not
// acknowledged (its sender resends it). Replication acknowledgements are
// therefore not sent either: the sender keeps the write queued.
//
// Why the backup is then causally closed in every region: a node applies
// a remote write only after the owners of its dependencies in its region
// confirmed them visible. If every node holds from the moment its fence is
// raised until it is lowered, and checkpoints in between, every remote
// write in node A's checkpoint was applied before A's hold, so its
// dependencies were visible at their owners before that — before every
// fence was raised, hence before any checkpoint: they are in their owners'
// checkpoints (a record only grows). Without the hold, a dependency could
// reach its owner after that owner's checkpoint and the write depending on
// it be applied at A before A's checkpoint (ClosureViolations finds that).
// And a write whose receiver's checkpoint lacks it is still queued in its
// sender's checkpoint (the acknowledgement is sent only when applied), so
// a restored cluster delivers it.
func (r *Replica) HoldRemote(now time.Time, hold bool) {
	r.held = hold
	if hold {
		return
	}
	run := r.deferred
	r.deferred = nil
	for _, f := range run {
		f(now)
	}
}

// Held reports whether the replica's records are held (HoldRemote) and
// how many remote writes and repairs wait for the release.
func (r *Replica) Held() (bool, int) { return r.held, len(r.deferred) }

// ClosureViolations checks that the causal stores of a backup are causally
// closed: in every region, every write a record holds (its value and, in
// siblings mode, each sibling) has each of its stored dependencies visible
// in the same region — the key's record there, on whichever node of the
// region holds it, has a version at least the dependency's (siblings mode:
// has seen the dependency's origin up to it). regions maps a region name
// to the engines of its nodes. It returns one line per violation, sorted.
//
// Dependencies known to be visible in every region when a write was made
// were pruned from it (they are applied everywhere before it), so they
// are not checked; the check is about what a cut can lose.
func ClosureViolations(regions map[string][]core.Engine, siblings bool) ([]string, error) {
	var out []string
	names := make([]string, 0, len(regions))
	for n := range regions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, reg := range names {
		recs := map[string]record{}
		for _, eng := range regions[reg] {
			it := eng.NewIter([]byte(prefixValue), []byte("v0"))
			for ok := it.First(); ok; ok = it.Next() {
				var rec record
				if err := openJSON(it.Key(), it.Value(), &rec); err != nil {
					it.Close()
					return nil, fmt.Errorf("causal: closure check, region %s: %w", reg, err)
				}
				key := string(it.Key()[len(prefixValue):])
				recs[key], _ = mergeRecords(recs[key], rec, siblings)
			}
			if err := it.Close(); err != nil {
				return nil, fmt.Errorf("causal: closure check, region %s: %w", reg, err)
			}
		}
		keys := make([]string, 0, len(recs))
		for k := range recs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			rec := recs[k]
			writes := []record{rec}
			if siblings {
				writes = rec.Sibs
			}
			for _, w := range writes {
				for _, d := range w.Deps {
					have := recs[d.Key]
					ok := have.V.AtLeast(d.V)
					if siblings {
						ok = seenOf(have.Seen, d.V.Node).AtLeast(d.V)
					}
					if !ok {
						at := "nothing"
						if !have.V.IsZero() {
							at = have.V.String()
						}
						out = append(out, fmt.Sprintf("region %s: %s@%s depends on %s@%s, of which the region holds %s", reg, k, w.V, d.Key, d.V, at))
					}
				}
			}
		}
	}
	return out, nil
}
