package core

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Effects is what a successful write did to the engine: the writes of its
// batch (engine keys: records with their checksums, expiry and index
// entries, index definitions) and the store's bookkeeping that goes with
// them. A replica in the same state that applies them (ApplyEffects) ends
// with the same engine bytes, version counter and index definitions as the
// one that ran the write, without running it: primary-backup replication
// ships Effects instead of commands, so a backup does not re-execute every
// write (consistency/primarybackup).
type Effects struct {
	// Writes are the engine writes, one per engine key, in the order the
	// write made them.
	Writes []EffectWrite
	// Counter is the store's version counter after the write.
	Counter uint64
	// Keys, Expired and Warns are the changes of Stats.Keys,
	// Stats.Expired and Stats.LargeValueWarns.
	Keys, Expired, Warns int64
}

// EffectWrite is one engine write of an Effects.
type EffectWrite struct {
	Key    []byte
	Value  []byte // nil for a deletion
	Delete bool
}

// ApplyTxnThen is ApplyTxn that also reports the transaction's effects:
// when t succeeds, then(fx) is called before anything is committed, and
// the commands it returns run in the same transaction after t's (their
// replies follow t's in the reply's array; if one fails, nothing is
// committed). The caller can so log the effects atomically with the
// write. fx and every slice in it are valid only during the call to then
// and must not be modified. A nil then is ApplyTxn.
func (s *Store) ApplyTxnThen(now time.Time, t Txn, then func(fx *Effects) []Command) Reply {
	o := s.newOp(now)
	r := o.runTxn(t)
	if !r.IsError() && then != nil {
		fx := &s.fx
		fx.Writes = fx.Writes[:0]
		for _, w := range o.writes.ws {
			fx.Writes = append(fx.Writes, EffectWrite{Key: w.key, Value: w.val, Delete: w.del})
		}
		fx.Counter, fx.Keys, fx.Expired, fx.Warns = o.counter, o.keysDelta, o.expired, o.warns
		more := then(fx)
		clear(fx.Writes)
		for i, c := range more {
			cr := o.run(c)
			if cr.IsError() {
				e := *cr.Err
				e.Msg = "command " + strconv.Itoa(len(t.Cmds)+i) + " (" + strings.ToUpper(c.Name) + "): " + e.Msg
				r = Reply{Kind: KindError, Err: &e, Version: cr.Version}
				break
			}
			r.Array = append(r.Array, cr)
		}
	}
	if r.IsError() {
		o.discard()
		return r
	}
	if err := o.commit(); err != nil {
		return fail(err)
	}
	return r
}

// ApplyEffects applies fx, made by ApplyTxnThen on a replica in the same
// state, and then runs cmds (a replica's own bookkeeping, such as the last
// applied sequence number), all in one atomic batch. The reply is cmds'
// array; if a command fails nothing is applied. The store copies what it
// keeps of fx. fx is trusted input (as a snapshot is): its writes are
// applied as they are, only their key spaces are checked.
func (s *Store) ApplyEffects(now time.Time, fx Effects, cmds ...Command) Reply {
	o := s.newOp(now)
	if _, rep, ok := o.applyEffects(fx, 0); !ok {
		return rep
	}
	replies := make([]Reply, 0, len(cmds))
	for i, c := range cmds {
		r := o.run(c)
		if r.IsError() {
			o.discard()
			e := *r.Err
			e.Msg = "command " + strconv.Itoa(i) + " (" + strings.ToUpper(c.Name) + "): " + e.Msg
			return Reply{Kind: KindError, Err: &e, Version: r.Version}
		}
		replies = append(replies, r)
	}
	if err := o.commit(); err != nil {
		return fail(err)
	}
	return Array(replies...)
}

// ApplyEffectsMeta is ApplyEffects with, instead of commands, one
// bookkeeping value of the replica (ReplicaMeta) written in the same
// atomic batch: value under name. It is written raw in the store's
// metadata key space — no record to read, decode and re-encode, no
// version, no key counted; commands and Dump never see it — with a
// CRC32C, so that ReplicaMeta reports a corrupted value as CodeCorruption
// instead of returning it. The store copies value. A failed commit (an I/O
// error) returns a CodeIO error and changes nothing.
func (s *Store) ApplyEffectsMeta(now time.Time, fx Effects, name string, value []byte) error {
	if directEffects(fx) {
		return s.applyEffectsDirect(fx, name, value, false)
	}
	return s.applyEffectsOp(now, fx, name, value)
}

// ApplyEffectsMetaOwned is ApplyEffectsMeta for a caller that hands fx's
// byte slices over to the store: it may keep every write's Key and Value
// as they are, without copying them (the memory engine then holds the
// caller's bytes), so the caller must never modify them, nor reuse their
// arrays, after the call — not even when the call fails. A replica
// applying the entries of a delivered consistency.Message may: a
// delivered body is immutable (primary-backup's backups do so). value is
// copied, as by ApplyEffectsMeta. Engines without the memory engine's
// ownership hand-over (Pebble) copy as before. The cost: a kept slice keeps
// its whole backing array (a message body, or the block it was carved
// from) alive until the key is overwritten or the memory engine packs
// its entries, so memory held can grow beyond the stored bytes.
func (s *Store) ApplyEffectsMetaOwned(now time.Time, fx Effects, name string, value []byte) error {
	if directEffects(fx) {
		return s.applyEffectsDirect(fx, name, value, true)
	}
	return s.applyEffectsOp(now, fx, name, value)
}

// applyEffectsOp is ApplyEffectsMeta through an op (any effects).
func (s *Store) applyEffectsOp(now time.Time, fx Effects, name string, value []byte) error {
	o := s.newOp(now)
	k, rep, ok := o.applyEffects(fx, 1+len(metaReplicaPfx)+len(name)+len(value)+4)
	if !ok {
		return rep.Err
	}
	l := len(k)
	k = append(append(append(k, pfxMeta), metaReplicaPfx...), name...)
	key := k[l:len(k):len(k)]
	l = len(k)
	k = seal(append(k, value...), l, keyCRC(key))
	o.set(key, k[l:len(k):len(k)])
	if err := o.commit(); err != nil {
		return AsError(err)
	}
	return nil
}

// directEffects reports whether fx can skip the op (applyEffectsDirect):
// every write is a data, expiry or index-entry key. Writes in the metadata
// space (index definitions, which the store must decode and track) and
// keys outside the store's spaces (refused) take the op's path.
func directEffects(fx Effects) bool {
	for _, w := range fx.Writes {
		if len(w.Key) == 0 {
			return false
		}
		switch w.Key[0] {
		case pfxData, pfxExpiry, pfxIndex:
		default:
			return false
		}
	}
	return true
}

// applyEffectsDirect is ApplyEffectsMeta for effects that directEffects
// accepts, without an op: nothing is read and there is nothing to roll
// back or look up, so the writes go straight into one engine batch, each
// key and value copied once into one allocation (with the replica's value
// and, when it moves, the version counter), and the store's bookkeeping
// follows the commit as op.commit's does. The engine ends byte-identical
// to the op's path (TestApplyEffectsDirectMatchesOp): the effects hold one
// write per key, and none in the metadata space, so the batch's keys are
// distinct and the order of its writes does not matter (the op sorts
// them; this path keeps the primary's order). With keep, fx's slices
// go to an ownership-taking batch as they are (ApplyEffectsMetaOwned).
func (s *Store) applyEffectsDirect(fx Effects, name string, value []byte, keep bool) error {
	counter := max(s.counter, fx.Counter)
	b := s.e.NewBatch()
	defer b.Close()
	owned, _ := b.(ownedSetter)
	// Only a batch that takes ownership (the memory engine's) keeps the
	// caller's slices; for any other the writes are copied into buf as
	// without keep (Batch does not promise to copy what Set is given).
	keep = keep && owned != nil
	n := 1 + len(metaReplicaPfx) + len(name) + len(value) + 4
	if counter != s.counter {
		n += 1 + len(metaCounter) + counterLen
	}
	if !keep {
		for _, w := range fx.Writes {
			n += len(w.Key) + len(w.Value)
		}
	}
	buf := make([]byte, 0, n)
	set := func(k, v []byte) { batchWrite(b, owned, k, v, false) }
	// piece returns the bytes appended to buf since l, capped.
	piece := func(l int) []byte { return buf[l:len(buf):len(buf)] }
	for _, w := range fx.Writes {
		if keep {
			batchWrite(b, owned, w.Key, w.Value, w.Delete)
			continue
		}
		l := len(buf)
		buf = append(buf, w.Key...)
		k := piece(l)
		if w.Delete {
			batchWrite(b, owned, k, nil, true)
			continue
		}
		l = len(buf)
		buf = append(buf, w.Value...)
		set(k, piece(l))
	}
	if counter != s.counter {
		l := len(buf)
		buf = append(append(buf, pfxMeta), metaCounter...)
		k := piece(l)
		l = len(buf)
		buf = appendCounter(buf, counter)
		set(k, piece(l))
	}
	l := len(buf)
	buf = append(append(append(buf, pfxMeta), metaReplicaPfx...), name...)
	k := piece(l)
	l = len(buf)
	buf = seal(append(buf, value...), l, keyCRC(k))
	set(k, piece(l))
	if err := b.Commit(s.syncCommits); err != nil {
		return AsError(Errorf(CodeIO, "commit: %v", err))
	}
	s.committed(counter, fx.Keys, fx.Expired, fx.Warns)
	return nil
}

// ReplicaMeta returns the bookkeeping value name last written by
// ApplyEffectsMeta, nil when there is none; a value that fails its
// checksum is a CodeCorruption error, an engine failure a CodeIO one.
func (s *Store) ReplicaMeta(name string) ([]byte, error) {
	key := append(append([]byte{pfxMeta}, metaReplicaPfx...), name...)
	b, err := s.e.Get(key)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, AsError(fmt.Errorf("read replica metadata %q: %w", name, err))
	case len(b) < 4:
		return nil, AsError(corruptf(key, "replica metadata of %d bytes", len(b)))
	}
	v, got, want := unseal(b, keyCRC(key))
	if got != want {
		return nil, AsError(corruptf(key, "checksum %08x, want %08x", got, want))
	}
	return bytes.Clone(v), nil
}

// applyEffects buffers fx's writes in o (keys and values copied into one
// allocation) and adds its bookkeeping; it returns the rest of that
// allocation, extra bytes of room for the caller's own writes. On a
// refused write it discards o and returns the error reply and false.
func (o *op) applyEffects(fx Effects, extra int) ([]byte, Reply, bool) {
	n := extra
	for _, w := range fx.Writes {
		n += len(w.Key) + len(w.Value)
	}
	buf := make([]byte, 0, n)
	for _, w := range fx.Writes {
		if len(w.Key) == 0 || !knownPrefix(w.Key[0]) {
			o.discard()
			return nil, ErrorReply(Errorf(CodeErr, "effects: engine key %q outside the store's key spaces", w.Key)), false
		}
		l := len(buf)
		buf = append(buf, w.Key...)
		k := buf[l:len(buf):len(buf)]
		if w.Delete {
			o.delete(k)
		} else {
			l = len(buf)
			buf = append(buf, w.Value...)
			o.set(k, buf[l:len(buf):len(buf)])
		}
		if k[0] == pfxMeta && bytes.HasPrefix(k[1:], []byte(metaIndexPfx)) {
			name := string(k[1+len(metaIndexPfx):])
			if w.Delete {
				o.setIndexDef(name, nil)
			} else {
				d, err := decodeIndexDef(k, w.Value)
				if err != nil {
					o.discard()
					return nil, ErrorReply(Errorf(CodeErr, "effects: index definition %q: %v", name, err)), false
				}
				o.setIndexDef(name, d)
			}
		}
	}
	o.counter = max(o.counter, fx.Counter)
	o.keysDelta += fx.Keys
	o.expired += fx.Expired
	o.warns += fx.Warns
	return buf[len(buf):len(buf):cap(buf)], Reply{}, true
}

// setIndexDef records an index definition change for commit without
// writing its meta key (ApplyEffects writes it as it came).
func (o *op) setIndexDef(name string, d *indexDef) {
	if o.idxChanges == nil {
		o.idxChanges = map[string]*indexDef{}
	}
	o.idxChanges[name] = d
}

// knownPrefix reports whether an engine key's first byte is one of the
// store's key spaces.
func knownPrefix(b byte) bool {
	switch b {
	case pfxData, pfxExpiry, pfxIndex, pfxMeta:
		return true
	}
	return false
}
