package raft

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/dialkv/dialkv/core"
)

// Cross-shard transactions: the state machine's side of two-phase commit
// (the coordinator is txncoord.go; the design is in docs/raft.md,
// "Cross-shard transactions").
//
// A shard's state machine keeps a transaction table:
//
//   - prepared intents: transaction ID, the coordinator shard, the state
//     machine clock at prepare (the time the transaction's commands run
//     at, at prepare and at commit), the transaction's part for this shard
//     (its conditions and commands on this shard's keys) and the keys
//     locked;
//   - locks: key -> the transaction whose intent holds it;
//   - decisions (on the coordinator shard only): transaction ID -> commit or
//     abort (the first one proposed wins), the transaction's reference
//     time and, for a commit, the participant shards that have not yet
//     acknowledged applying it.
//
// Operations (proposal kind kindTxn2PC, one Raft entry each):
//
//   - prepare: if a key of the part is locked by another transaction, the
//     vote is a TXNCONFLICT error (nothing recorded); otherwise the part is
//     evaluated (core.Store.TryTxn: conditions and commands, nothing
//     written): an error (failed condition, wrong type...) is a "no" vote,
//     nothing recorded; success records the intent and locks its keys
//     and the vote is "yes" (the evaluated replies). A prepare of a
//     transaction already prepared here answers its recorded vote.
//   - commit: applies the intent's commands with core.Store.ApplyTxn at the
//     prepare's clock, drops the intent, releases its locks; the reply is
//     ApplyTxn's. Without an intent (already committed): TXNUNKNOWN.
//   - abort: drops the intent and releases its locks (nothing without one).
//   - decide: records the decision on the coordinator shard unless one is
//     recorded; the reply is the recorded decision (Int 1 commit, 0 abort),
//     so a commit by the coordinator and an abort by recovery cannot both
//     be recorded. A commit applied when the state machine clock is past
//     the transaction's reference time plus txnDecisionTTL is recorded as
//     an abort (see "Collection" below).
//   - ack: participants that applied a recorded commit; the record is
//     dropped once every participant has acknowledged.
//   - collect: drops the abort records whose reference time is more than
//     txnDecisionTTL behind the state machine clock.
//
// Collection of decisions. A commit record is needed while an intent of
// its transaction may exist on some participant: it is dropped when every
// participant acknowledged applying the commit (the coordinator acks after
// the commits it saw applied; the recovery sweep commits and acks for a
// coordinator that died). After that no intent of the transaction exists
// (a prepare's later copies are deduplicated), so a resolver that still
// asks (it read the intent list before the commit applied) records an
// abort that has nothing left to abort. An abort record must outlive any
// late commit decision of the coordinator (if it were dropped, a delayed
// decide-commit could record commit after participants aborted): it is
// kept until the state machine clock passes its reference time plus
// txnDecisionTTL, and from then on a decide-commit of that transaction is
// answered abort (its reference time is the coordinator's start, at most
// the abort record's: see Service.runTxn). The state machine clock never
// goes back, so every decide-commit applied after the collection is
// refused. Abort records need no acknowledgement: an intent whose
// decision is not found is aborted.
//
// Any other write (command, transaction, batch item) that touches a locked
// key is refused with TXNCONFLICT, not applied: nothing writes a key
// between its prepare and its commit, so the commit's ApplyTxn at the
// prepare's clock does exactly what the prepare evaluated. Reads
// (Lookup) see the last committed value; an intent is invisible until its
// commit applies it.
//
// The table is kept in the state machine's engine with the deduplication
// state (dedup.flush writes it, loadDedup reads it: the same atomic
// batches and the same snapshot-restore clearing), under keys inside the
// deduplication range [dedupListKey, dedupEnd) that no deduplication key
// uses:
//
//	\xffraft/dedup~txn/i/<16-byte ID>   an intent (encodeIntent)
//	\xffraft/dedup~txn/d/<16-byte ID>   a decision: 1 byte, 'c' or 'a'
//
//	decision value: byte 'c' or 'a' | int64 reference time | uvarint n |
//	n uvarint participant shards (a 1-byte value: a record written before
//	collection existed, never collected when it is a commit)

// Codes of the error replies of two-phase commit.
const (
	// CodeTxnConflict: a key is locked by a prepared cross-shard
	// transaction; nothing was applied, retry (the Service retries by
	// itself until the request's deadline).
	CodeTxnConflict core.Code = "TXNCONFLICT"
	// CodeTxnUnknown: a commit found no intent of the transaction (already
	// committed by another driver).
	CodeTxnUnknown core.Code = "TXNUNKNOWN"
)

// kindTxn2PC is the proposal kind of two-phase commit operations.
const kindTxn2PC = 5

// The two-phase commit operations.
const (
	txnOpPrepare = 1
	txnOpCommit  = 2
	txnOpAbort   = 3
	txnOpDecide  = 4
	txnOpAck     = 5
	txnOpCollect = 6
)

// txnDecisionTTL is how long (by the coordinator shard's state machine
// clock, from the transaction's reference time) an abort decision is
// kept, and after which a commit decision is refused. It bounds the
// clock skew between coordinators and the time from a transaction's
// start to its decision that still let it commit.
const txnDecisionTTL = time.Minute

// The decisions, as recorded.
const (
	decisionCommit byte = 'c'
	decisionAbort  byte = 'a'
)

// TxnID identifies a cross-shard transaction: the coordinator's proposer ID
// and a sequence number of that proposer.
type TxnID [16]byte

func (id TxnID) String() string { return hex.EncodeToString(id[:]) }

// txnOp is one two-phase commit operation (the body of a kindTxn2PC
// proposal).
//
//	byte    op
//	16      transaction ID
//	prepare: uvarint coordinator shard, then core.EncodeTxn(part)
//	decide:  byte decision [| int64 ref | uvarint n | n uvarint shards]
//	ack:     uvarint n | n uvarint shards
//	collect: nothing (the ID is ignored)
type txnOp struct {
	op       byte
	id       TxnID
	coord    int      // prepare
	part     core.Txn // prepare
	decision byte     // decide
	// ref is the transaction's reference time (decide: the coordinator's
	// clock at the attempt's start for a commit, the intent's prepare
	// clock for a recovery's abort); shards are the participants (decide
	// commit: all of them; ack: those that applied the commit).
	ref    int64
	shards []int
	// legacy: a decide without ref and shards (the format before
	// collection): recorded without the TTL rule, never collected.
	legacy bool
}

func appendShards(b []byte, shards []int) []byte {
	b = binary.AppendUvarint(b, uint64(len(shards)))
	for _, sh := range shards {
		b = binary.AppendUvarint(b, uint64(sh))
	}
	return b
}

// readShards decodes appendShards' encoding; rest is what follows.
func readShards(b []byte) (shards []int, rest []byte, ok bool) {
	n, l := binary.Uvarint(b)
	if l <= 0 || n > 1<<16 {
		return nil, nil, false
	}
	b = b[l:]
	for i := uint64(0); i < n; i++ {
		sh, l := binary.Uvarint(b)
		if l <= 0 || sh > 1<<20 {
			return nil, nil, false
		}
		shards = append(shards, int(sh))
		b = b[l:]
	}
	return shards, b, true
}

func encodeTxnOp(o txnOp) []byte {
	b := append([]byte{o.op}, o.id[:]...)
	switch o.op {
	case txnOpPrepare:
		b = binary.AppendUvarint(b, uint64(o.coord))
		b = append(b, core.EncodeTxn(o.part)...)
	case txnOpDecide:
		b = append(b, o.decision)
		if !o.legacy {
			b = binary.LittleEndian.AppendUint64(b, uint64(o.ref))
			b = appendShards(b, o.shards)
		}
	case txnOpAck:
		b = appendShards(b, o.shards)
	}
	return b
}

func decodeTxnOp(b []byte) (txnOp, error) {
	var o txnOp
	if len(b) < 17 {
		return o, errBadProposal
	}
	o.op = b[0]
	copy(o.id[:], b[1:17])
	rest := b[17:]
	switch o.op {
	case txnOpPrepare:
		c, n := binary.Uvarint(rest)
		if n <= 0 || c > 1<<20 {
			return o, errBadProposal
		}
		o.coord = int(c)
		t, err := core.DecodeTxn(rest[n:])
		if err != nil {
			return o, fmt.Errorf("%w: %w", errBadProposal, err)
		}
		o.part = t
	case txnOpCommit, txnOpAbort, txnOpCollect:
		if len(rest) != 0 {
			return o, errBadProposal
		}
	case txnOpDecide:
		if len(rest) < 1 || (rest[0] != decisionCommit && rest[0] != decisionAbort) {
			return o, errBadProposal
		}
		o.decision = rest[0]
		if len(rest) == 1 {
			o.legacy = true
			break
		}
		if len(rest) < 9 {
			return o, errBadProposal
		}
		o.ref = int64(binary.LittleEndian.Uint64(rest[1:9]))
		sh, tail, ok := readShards(rest[9:])
		if !ok || len(tail) != 0 {
			return o, errBadProposal
		}
		o.shards = sh
	case txnOpAck:
		sh, tail, ok := readShards(rest)
		if !ok || len(tail) != 0 {
			return o, errBadProposal
		}
		o.shards = sh
	default:
		return o, errBadProposal
	}
	return o, nil
}

// intent is a prepared transaction's part on one shard.
type intent struct {
	coord int
	now   int64 // state machine clock at prepare: the part runs at it
	part  core.Txn
	keys  []string // locked, sorted, distinct
	vote  []byte   // the prepare's reply (core.EncodeReply)
}

// encodeIntent encodes an intent record:
//
//	uvarint coord | int64 now | uvarint len(vote) | vote | core.EncodeTxn(part)
func encodeIntent(in *intent) []byte {
	b := binary.AppendUvarint(nil, uint64(in.coord))
	b = binary.LittleEndian.AppendUint64(b, uint64(in.now))
	b = binary.AppendUvarint(b, uint64(len(in.vote)))
	b = append(b, in.vote...)
	return append(b, core.EncodeTxn(in.part)...)
}

func decodeIntent(b []byte) (*intent, error) {
	bad := fmt.Errorf("raft: transaction intent record: %w", core.ErrCorruption)
	c, n := binary.Uvarint(b)
	if n <= 0 || len(b) < n+8 {
		return nil, bad
	}
	in := &intent{coord: int(c), now: int64(binary.LittleEndian.Uint64(b[n:]))}
	b = b[n+8:]
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return nil, bad
	}
	in.vote = bytes.Clone(b[n : n+int(l)])
	t, err := core.DecodeTxn(b[n+int(l):])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", bad, err)
	}
	in.part = t
	in.keys = txnKeys(t)
	return in, nil
}

// txnKeys returns the distinct keys a transaction touches, sorted.
func txnKeys(t core.Txn) []string {
	var ks []string
	for _, c := range t.Conds {
		ks = append(ks, string(c.Key))
	}
	for _, c := range t.Cmds {
		for _, k := range core.CommandKeys(c) {
			ks = append(ks, string(k))
		}
	}
	slices.Sort(ks)
	return slices.Compact(ks)
}

var (
	txnIntentPrefix = []byte("\xffraft/dedup~txn/i/")
	txnDecidePrefix = []byte("\xffraft/dedup~txn/d/")
)

func txnKey(prefix []byte, id TxnID) []byte {
	return append(append([]byte(nil), prefix...), id[:]...)
}

// decisionRec is a recorded decision.
type decisionRec struct {
	d    byte
	ref  int64 // the transaction's reference time (txnOp.ref)
	left []int // commit: participants that have not acknowledged, ascending
	// legacy: recorded before collection existed (no ref, no
	// participants): a commit is kept for ever.
	legacy bool
}

func encodeDecision(r *decisionRec) []byte {
	b := []byte{r.d}
	if r.legacy {
		return b
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(r.ref))
	return appendShards(b, r.left)
}

func decodeDecision(v []byte) (*decisionRec, error) {
	bad := fmt.Errorf("raft: transaction decision record: %w", core.ErrCorruption)
	if len(v) < 1 || (v[0] != decisionCommit && v[0] != decisionAbort) {
		return nil, bad
	}
	r := &decisionRec{d: v[0]}
	if len(v) == 1 {
		r.legacy = true
		return r, nil
	}
	if len(v) < 9 {
		return nil, bad
	}
	r.ref = int64(binary.LittleEndian.Uint64(v[1:9]))
	left, tail, ok := readShards(v[9:])
	if !ok || len(tail) != 0 {
		return nil, bad
	}
	r.left = left
	return r, nil
}

// txnTable is a shard's two-phase commit state.
type txnTable struct {
	intents   map[TxnID]*intent
	locks     map[string]TxnID
	decisions map[TxnID]*decisionRec
	// changed intents and decisions since the last flush
	changedI, changedD []TxnID
}

func newTxnTable() *txnTable {
	return &txnTable{intents: map[TxnID]*intent{}, locks: map[string]TxnID{}, decisions: map[TxnID]*decisionRec{}}
}

// pending reports whether flush has anything to write.
func (t *txnTable) pending() bool { return len(t.changedI) > 0 || len(t.changedD) > 0 }

// flush writes the changes since the last flush into b, in a fixed order
// (sorted IDs).
func (t *txnTable) flush(b core.Batch) {
	sortIDs := func(ids []TxnID) []TxnID {
		slices.SortFunc(ids, func(a, b TxnID) int { return bytes.Compare(a[:], b[:]) })
		return slices.Compact(ids)
	}
	for _, id := range sortIDs(t.changedI) {
		if in, ok := t.intents[id]; ok {
			b.Set(txnKey(txnIntentPrefix, id), encodeIntent(in))
		} else {
			b.Delete(txnKey(txnIntentPrefix, id))
		}
	}
	for _, id := range sortIDs(t.changedD) {
		if r, ok := t.decisions[id]; ok {
			b.Set(txnKey(txnDecidePrefix, id), encodeDecision(r))
		} else {
			b.Delete(txnKey(txnDecidePrefix, id))
		}
	}
	t.changedI, t.changedD = t.changedI[:0], t.changedD[:0]
}

// loadTxnTable reads the table from an engine.
func loadTxnTable(r core.Reader) (*txnTable, error) {
	t := newTxnTable()
	load := func(prefix []byte, f func(id TxnID, v []byte) error) error {
		hi := append(bytes.Clone(prefix[:len(prefix)-1]), prefix[len(prefix)-1]+1)
		it := r.NewIter(prefix, hi)
		for it.First(); it.Valid(); it.Next() {
			k := it.Key()
			if len(k) != len(prefix)+16 {
				it.Close()
				return fmt.Errorf("raft: transaction table key of %d bytes: %w", len(k), core.ErrCorruption)
			}
			var id TxnID
			copy(id[:], k[len(prefix):])
			if err := f(id, it.Value()); err != nil {
				it.Close()
				return err
			}
		}
		if err := it.Close(); err != nil {
			return fmt.Errorf("raft: read transaction table: %w", err)
		}
		return nil
	}
	err := load(txnIntentPrefix, func(id TxnID, v []byte) error {
		in, err := decodeIntent(v)
		if err != nil {
			return err
		}
		t.intents[id] = in
		for _, k := range in.keys {
			t.locks[k] = id
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = load(txnDecidePrefix, func(id TxnID, v []byte) error {
		r, err := decodeDecision(v)
		if err != nil {
			return err
		}
		t.decisions[id] = r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// conflict returns a TXNCONFLICT reply if one of keys is locked by a
// transaction other than self, else nil.
func (t *txnTable) conflict(keys [][]byte, self *TxnID) *core.Reply {
	if len(t.locks) == 0 {
		return nil
	}
	for _, k := range keys {
		if id, ok := t.locks[string(k)]; ok && (self == nil || id != *self) {
			in := t.intents[id]
			r := core.ErrorReply(core.Errorf(CodeTxnConflict,
				"key %q is locked by cross-shard transaction %s (prepared at %d, coordinator shard %d); retry",
				k, id, in.now, in.coord))
			return &r
		}
	}
	return nil
}

// blocked returns the TXNCONFLICT reply to a command or transaction
// proposal that touches a locked key, else nil.
func (t *txnTable) blocked(p proposal) *core.Reply {
	if t == nil || len(t.locks) == 0 {
		return nil
	}
	switch {
	case p.cmd != nil:
		return t.conflict(core.CommandKeys(*p.cmd), nil)
	case p.txn != nil:
		ks := txnKeys(*p.txn)
		bs := make([][]byte, len(ks))
		for i, k := range ks {
			bs[i] = []byte(k)
		}
		return t.conflict(bs, nil)
	}
	return nil
}

// apply applies one two-phase commit operation at state machine clock now.
func (t *txnTable) apply(st *core.Store, now int64, o txnOp) core.Reply {
	switch o.op {
	case txnOpPrepare:
		if in, ok := t.intents[o.id]; ok { // prepared before: same vote
			r, err := core.DecodeReply(in.vote)
			if err != nil {
				return core.ErrorReply(core.Errorf(core.CodeErr, "kept vote of %s: %v", o.id, err))
			}
			return r
		}
		keys := txnKeys(o.part)
		bs := make([][]byte, len(keys))
		for i, k := range keys {
			bs[i] = []byte(k)
		}
		if r := t.conflict(bs, nil); r != nil {
			return *r
		}
		r := st.TryTxn(time.Unix(0, now), o.part)
		if r.IsError() {
			return r // a "no" vote: nothing recorded
		}
		in := &intent{coord: o.coord, now: now, part: o.part, keys: keys, vote: core.EncodeReply(r)}
		t.intents[o.id] = in
		for _, k := range keys {
			t.locks[k] = o.id
		}
		t.changedI = append(t.changedI, o.id)
		return r
	case txnOpCommit:
		in, ok := t.intents[o.id]
		if !ok {
			return core.ErrorReply(core.Errorf(CodeTxnUnknown, "no prepared intent of transaction %s (already committed)", o.id))
		}
		t.release(o.id, in)
		// The conditions held at prepare and nothing wrote the locked keys
		// since: the commands alone, at the prepare's clock, do what the
		// prepare evaluated.
		return st.ApplyTxn(time.Unix(0, in.now), core.Txn{Cmds: in.part.Cmds})
	case txnOpAbort:
		if in, ok := t.intents[o.id]; ok {
			t.release(o.id, in)
		}
		return core.OK()
	case txnOpDecide:
		r, ok := t.decisions[o.id]
		if !ok { // the first decision proposed wins
			r = &decisionRec{d: o.decision, ref: o.ref, legacy: o.legacy}
			if r.d == decisionCommit && !o.legacy && now > o.ref+int64(txnDecisionTTL) {
				// Too late: an abort recorded for it may have been
				// collected already.
				r.d = decisionAbort
			}
			if r.d == decisionCommit && !o.legacy {
				r.left = slices.Sorted(slices.Values(o.shards))
				r.left = slices.Compact(r.left)
			}
			t.decisions[o.id] = r
			t.changedD = append(t.changedD, o.id)
		}
		if r.d == decisionCommit {
			return core.Int(1)
		}
		return core.Int(0)
	case txnOpAck:
		r, ok := t.decisions[o.id]
		if !ok || r.d != decisionCommit || r.legacy {
			return core.Int(0)
		}
		left := slices.DeleteFunc(slices.Clone(r.left), func(sh int) bool { return slices.Contains(o.shards, sh) })
		if len(left) == len(r.left) {
			return core.Int(int64(len(left)))
		}
		if len(left) == 0 {
			delete(t.decisions, o.id)
		} else {
			r.left = left
		}
		t.changedD = append(t.changedD, o.id)
		return core.Int(int64(len(left)))
	case txnOpCollect:
		var n int64
		for id, r := range t.decisions {
			if r.d == decisionAbort && now > r.ref+int64(txnDecisionTTL) {
				delete(t.decisions, id)
				t.changedD = append(t.changedD, id)
				n++
			}
		}
		return core.Int(n)
	}
	return core.ErrorReply(core.Errorf(core.CodeErr, "unknown transaction operation %d", o.op))
}

// release drops intent id and its locks.
func (t *txnTable) release(id TxnID, in *intent) {
	for _, k := range in.keys {
		if t.locks[k] == id {
			delete(t.locks, k)
		}
	}
	delete(t.intents, id)
	t.changedI = append(t.changedI, id)
}

// IntentInfo describes a prepared intent (txnIntentsQuery).
type IntentInfo struct {
	ID    TxnID
	Coord int   // coordinator shard
	Now   int64 // state machine clock at prepare (Unix ns)
}

// txnIntentsQuery asks Lookup for the shard's prepared intents, and for
// the decision of Decision if set.
type txnIntentsQuery struct{}

// intentInfos lists the prepared intents, sorted by ID.
func (t *txnTable) intentInfos() []IntentInfo {
	out := make([]IntentInfo, 0, len(t.intents))
	for id, in := range t.intents {
		out = append(out, IntentInfo{ID: id, Coord: in.coord, Now: in.now})
	}
	slices.SortFunc(out, func(a, b IntentInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// DecisionInfo describes a recorded decision (txnDecisionsQuery).
type DecisionInfo struct {
	ID     TxnID
	Commit bool
	Ref    int64 // the transaction's reference time (Unix ns)
	Left   []int // commit: participants that have not acknowledged it
	Legacy bool  // recorded before collection existed
}

// txnDecisionsQuery asks Lookup for the shard's decision records and its
// state machine clock (decisionsView).
type txnDecisionsQuery struct{}

// decisionsView is the answer to txnDecisionsQuery.
type decisionsView struct {
	Clock     int64 // the state machine clock
	Decisions []DecisionInfo
}

// decisionInfos lists the decision records, sorted by ID.
func (t *txnTable) decisionInfos(clock int64) decisionsView {
	out := make([]DecisionInfo, 0, len(t.decisions))
	for id, r := range t.decisions {
		out = append(out, DecisionInfo{ID: id, Commit: r.d == decisionCommit, Ref: r.ref, Left: slices.Clone(r.left), Legacy: r.legacy})
	}
	slices.SortFunc(out, func(a, b DecisionInfo) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return decisionsView{Clock: clock, Decisions: out}
}

// applyTxnOp applies a two-phase commit operation (applyProposal); the
// state machines without a deduplication state (tests) refuse it.
func applyTxnOp(dd *dedup, st *core.Store, clock int64, o txnOp) core.Reply {
	if dd == nil {
		return core.ErrorReply(core.Errorf(core.CodeErr, "two-phase commit needs the state machine's transaction table"))
	}
	return dd.tx.apply(st, clock, o)
}
