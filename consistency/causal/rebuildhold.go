package causal

import (
	"errors"
	"fmt"

	"github.com/dialkv/dialkv/core"
)

// Keys held after a rebuild. When two nodes of different regions rebuild
// at once, the one that finishes first may hold a write (salvaged, or
// from a third region's seed) that depends on a write of the other
// rebuilding node to a key this node owns: that write comes only by
// replication once the other rebuild finished (a partial seed is not
// stored). Served meanwhile, a reader in this region could see the later
// write and not the earlier one (same-region sessions skip the dependency
// wait). So a finishing rebuild scans the records this node owns and
// keeps refusing every key with a sibling whose dependency on a key this
// node owns is not visible here, until it is (checked every tick).
// Ordering rule: the finishing batch marks the scan pending (Scan) in the
// same commit that deletes the rebuild mark, so a crash before the scan
// is written keeps every own key refused until it is redone.

// keyRebuildHeld stores a rebuildHeld while a finished rebuild still
// refuses some keys.
const keyRebuildHeld = "m/rebuild-held"

// rebuildHeld is what a finished rebuild still waits for.
type rebuildHeld struct {
	// Scan: the records have not been scanned yet (every own key is
	// refused until they are).
	Scan bool `json:"scan,omitempty"`
	// Keys: per key, the dependencies on keys this node owns that are
	// not visible here yet.
	Keys map[string][]Dep `json:"keys,omitempty"`
}

// heldKey reports whether a finished rebuild still refuses key.
func (r *Replica) heldKey(key string) bool {
	h := r.postRebuild
	return h != nil && r.region != "" && r.owner(r.region, key) == r.id && (h.Scan || len(h.Keys[key]) > 0)
}

// loadRebuildHeld reads what a finished rebuild still waits for (at
// recover).
func (r *Replica) loadRebuildHeld() error {
	b, err := r.eng.Get([]byte(keyRebuildHeld))
	switch {
	case errors.Is(err, core.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("causal: read rebuild holds: %w", err)
	}
	var h rebuildHeld
	if err := openJSON([]byte(keyRebuildHeld), b, &h); err != nil {
		h = rebuildHeld{Scan: true} // scanned again: the records say it all
	}
	r.postRebuild = &h
	return nil
}

// tickRebuildHeld scans the records if a finished rebuild has not yet,
// and releases the keys whose dependencies became visible.
func (r *Replica) tickRebuildHeld() {
	h := r.postRebuild
	if h == nil {
		return
	}
	next := rebuildHeld{Keys: map[string][]Dep{}}
	cand := h.Keys
	if h.Scan {
		var err error
		if cand, err = r.scanRebuildHeld(); err != nil {
			return // every own key stays refused; scanned again next tick
		}
	}
	changed := h.Scan
	for key, deps := range cand {
		for _, d := range deps {
			if ok, err := r.visible(d); err != nil || !ok {
				next.Keys[key] = append(next.Keys[key], d)
			}
		}
		changed = changed || len(next.Keys[key]) != len(deps)
	}
	if !changed {
		return
	}
	b := r.eng.NewBatch()
	defer b.Close()
	if len(next.Keys) == 0 {
		b.Delete([]byte(keyRebuildHeld))
	} else {
		b.Set([]byte(keyRebuildHeld), sealJSON([]byte(keyRebuildHeld), next))
	}
	if err := b.Commit(false); err != nil {
		return // kept as it was; tried again next tick
	}
	r.postRebuild = &next
	if len(next.Keys) == 0 {
		r.postRebuild = nil
	}
}

// scanRebuildHeld returns, per key this node owns, its siblings'
// dependencies on other keys this node owns (the caller keeps those not
// visible).
func (r *Replica) scanRebuildHeld() (map[string][]Dep, error) {
	out := map[string][]Dep{}
	it := r.eng.NewIter([]byte(prefixValue), []byte("v0"))
	for ok := it.First(); ok; ok = it.Next() {
		key := string(it.Key()[len(prefixValue):])
		var rec record
		if r.owner(r.region, key) != r.id || openJSON(it.Key(), it.Value(), &rec) != nil {
			continue // not this node's, or unreadable (refused until repaired)
		}
		for _, s := range rec.Sibs {
			for _, d := range s.Deps {
				if d.Key != key && r.owner(r.region, d.Key) == r.id {
					out[key] = r.merge(out[key], d)
				}
			}
		}
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("causal: scan records after the rebuild: %w", err)
	}
	return out, nil
}
