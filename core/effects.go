package core

import (
	"bytes"
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
	n := 0
	for _, w := range fx.Writes {
		n += len(w.Key) + len(w.Value)
	}
	buf := make([]byte, 0, n)
	for _, w := range fx.Writes {
		if len(w.Key) == 0 || !knownPrefix(w.Key[0]) {
			o.discard()
			return ErrorReply(Errorf(CodeErr, "effects: engine key %q outside the store's key spaces", w.Key))
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
		if idx := metaKey(metaIndexPfx); bytes.HasPrefix(k, idx) {
			name := string(k[len(idx):])
			if w.Delete {
				o.setIndexDef(name, nil)
			} else {
				d, err := decodeIndexDef(w.Value)
				if err != nil {
					o.discard()
					return ErrorReply(Errorf(CodeErr, "effects: index definition %q: %v", name, err))
				}
				o.setIndexDef(name, d)
			}
		}
	}
	o.counter = max(o.counter, fx.Counter)
	o.keysDelta += fx.Keys
	o.expired += fx.Expired
	o.warns += fx.Warns
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
