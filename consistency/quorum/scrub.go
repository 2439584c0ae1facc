package quorum

import (
	"bytes"
	"fmt"
	"strings"
)

// ScrubReport is what one Scrub step found.
type ScrubReport struct {
	Checked int // stored records read
	// Corrupt are records that failed their CRC-32C (or did not decode).
	Corrupt int
	// Repaired are the corrupt records written again from the replica's
	// own copy (or deleted when the replica holds no copy of them).
	Repaired int
	// Keys names the corrupt records' engine keys (at most 16), for logs.
	Keys []string
}

// Scrub checks the replica's stored records (objects, hints and meta) in
// engine-key order, up to limit of them, from cursor (nil: the first), and
// returns the cursor to continue from (nil once the pass is complete).
// It is the background check of records that rot on disk while the node
// runs: at start, recover drops such records and the other owners refill
// them, but a running replica serves its objects from memory and would
// otherwise only meet the damage at its next restart.
//
// A record that fails its checksum is repaired from the replica's own
// in-memory copy, which every record is written from (persist) and which
// the replica serves, replicates and compares in anti-entropy: the record
// is written again, so a restart recovers the object instead of dropping
// it. This loses nothing: dropping the copy and waiting for the other
// owners (what recovery must do) would lose a write that reached only this
// owner (W=1) until a client writes the key again. A record the replica
// holds no copy of (a stale key) is deleted. The HLC and epoch records are
// written again from the replica's clock and epoch.
//
// Call it on the replica's goroutine like every input (it reads and
// writes the engine). The writes are unsynced like every persist; the
// host syncs them with the next Ready (the replica marks itself dirty).
func (r *Replica) Scrub(cursor []byte, limit int) (next []byte, rep ScrubReport, err error) {
	if limit <= 0 {
		limit = 256
	}
	lower := []byte(prefixHint)
	if bytes.Compare(cursor, lower) > 0 {
		lower = cursor
	}
	it := r.eng.NewIter(lower, []byte("o0")) // "h/" < "m/" < "o/"
	var bad []string
	for ok := it.First(); ok; ok = it.Next() {
		if rep.Checked == limit {
			next = append([]byte(nil), it.Key()...)
			break
		}
		rep.Checked++
		if !r.recordSound(it.Key(), it.Value()) {
			bad = append(bad, string(it.Key()))
		}
	}
	if cerr := it.Close(); cerr != nil {
		return nil, rep, fmt.Errorf("quorum: scrub: %w", cerr)
	}
	for _, k := range bad {
		rep.Corrupt++
		if len(rep.Keys) < 16 {
			rep.Keys = append(rep.Keys, k)
		}
		if err := r.rewrite(k); err != nil {
			return nil, rep, fmt.Errorf("quorum: scrub: repairing %q: %w", k, err)
		}
		rep.Repaired++
	}
	return next, rep, nil
}

// recordSound reports whether the stored value v under engine key k opens
// (and, for objects and hints, decodes).
func (r *Replica) recordSound(k, v []byte) bool {
	switch {
	case bytes.HasPrefix(k, []byte(prefixObj)), bytes.HasPrefix(k, []byte(prefixHint)):
		return openObject(v) != nil
	}
	_, ok := openRecord(v)
	return ok
}

// rewrite writes engine key k again from the replica's state, or deletes
// it if the replica holds nothing under it.
func (r *Replica) rewrite(k string) error {
	switch {
	case strings.HasPrefix(k, prefixObj):
		var o *Object
		if e := r.objs[k[len(prefixObj):]]; e != nil {
			o = e.obj
		}
		return r.persist(k, o)
	case strings.HasPrefix(k, prefixHint):
		rest := k[len(prefixHint):]
		var o *Object
		if i := strings.IndexByte(rest, 0); i >= 0 {
			if e := r.hints[nodeID(rest[:i])][rest[i+1:]]; e != nil {
				o = e.obj
			}
		}
		return r.persist(k, o)
	case k == keyHLC:
		return r.persist(k, nil) // deletes it and writes keyHLC anew
	case k == keyEpoch:
		b := r.eng.NewBatch()
		defer b.Close()
		if epoch, ok := strings.CutPrefix(string(r.dotID), string(r.id)+"."); ok && epoch != "" {
			b.Set([]byte(keyEpoch), sealRecord([]byte(epoch)))
		} else {
			b.Delete([]byte(keyEpoch))
		}
		if err := b.Commit(false); err != nil {
			return err
		}
		r.dirty = true
		return nil
	}
	// An unknown meta key: nothing reads it; drop it.
	b := r.eng.NewBatch()
	defer b.Close()
	b.Delete([]byte(k))
	if err := b.Commit(false); err != nil {
		return err
	}
	r.dirty = true
	return nil
}
