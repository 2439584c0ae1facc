// Package primarybackup is the simulator's reference strategy: small enough
// to validate the harness, correct enough that the checkers pass on it, and
// with deliberately broken variants (Bugs) that they must flag.
//
// # Protocol
//
// The view is fixed: the first of Config.Peers is the primary (parameter
// "primary" names another), every other replica is a backup. There is no
// failover — a crashed primary makes the cluster unavailable until it
// restarts — which keeps the protocol obviously safe; Raft is the strategy
// with leader election.
//
//   - A write (any non-read-only command, or a transaction) sent to the
//     primary is run there, once: the entry with the next sequence number
//     holds its effects (core.Effects: the engine writes it made and the
//     store's bookkeeping, from core.Store.ApplyTxnThen), and its log
//     record is written in the same atomic batch as the write; the primary
//     asks the driver to sync (Ready.Sync) before the entry is sent to the
//     backups.
//   - A backup applies entries strictly in sequence order — the effects as
//     they are (core.Store.ApplyEffects), without running the write again,
//     so its records (values, versions, expiry) are byte for byte the
//     primary's — records the highest applied number in the same batch,
//     syncs, and acknowledges it. Its store keeps the entry's keys and
//     values as slices of the delivered message, which is immutable
//     (consistency.Message; core.Store.ApplyEffectsMetaOwned).
//     Duplicates are ignored; an entry after a gap is refused and the
//     acknowledgement says so, and the primary resends from the gap at
//     once (go-back-N). On every tick the primary also resends to a backup
//     that has made no progress since the previous tick.
//   - The primary answers the client once every backup has acknowledged the
//     entry (parameter "ack=all", the default) or once a majority of the
//     replicas, itself included, hold it ("ack=majority").
//   - Reads are served by the primary from its own state. A write the
//     primary has applied is already durable there and will reach every
//     backup, so such reads are linearizable.
//   - A backup answers every request with a MOVED error naming the
//     primary; clients retry there (this is certain not to have happened).
//   - A failed command (wrong type, failed condition, I/O error, corrupted
//     record) changes nothing and is not replicated; a backup that fails to
//     apply an entry (I/O error, corruption) does not acknowledge it and
//     retries when it is resent.
//   - Log records are deleted once every backup has acknowledged them;
//     the lowest record kept is recorded in the same batch. A restarted
//     primary finds its last sequence number as that of its last record.
//
// The primary's metadata (log records, the lowest kept) lives in the
// store under keys starting with "\x00pb:", which Dump leaves out; a
// backup's last applied number is the store's replica metadata
// (core.Store.ApplyEffectsMeta), outside the keys commands see.
package primarybackup

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Name is the strategy's name, as in `dialkv sim --strategy`.
const Name = "primary-backup"

// CodeMoved is the error code a backup answers requests with; the message
// is the primary's node id. The request did not happen: retry there.
const CodeMoved core.Code = "MOVED"

// The deliberately broken variants.
const (
	BugStaleBackupRead    = "stale-backup-read"
	BugAckBeforeReplicate = "ack-before-replicate"
)

// Bugs lists the broken variants, for `dialkv sim --list-bugs`.
func Bugs() []consistency.Bug {
	return []consistency.Bug{
		{Name: BugStaleBackupRead, Strategy: Name, Breaks: "linearizability: backups serve reads from their own, possibly stale, state"},
		{Name: BugAckBeforeReplicate, Strategy: Name, Breaks: "durability: the primary acks writes before syncing or replicating them; a primary crash loses them"},
	}
}

const (
	metaPrefix = "\x00pb:"
	keyLow     = metaPrefix + "low" // primary: lowest log record kept
	// metaApplied names a backup's last applied sequence number (8 bytes,
	// big-endian) among the store's replica metadata (core.Store.ReplicaMeta):
	// written raw with each entry's effects (ApplyEffectsMeta) rather than
	// as a record SET through a command, which read, decoded, checked and
	// re-encoded the previous record on every entry.
	metaApplied = "primarybackup/applied"
	logPrefix   = metaPrefix + "log:"
	resendEvery = 20 * time.Millisecond
	maxBatch    = 64
	truncBatch  = 256
)

type pending struct {
	seq   uint64
	id    uint64
	reply core.Reply
}

// Replica is one node of the strategy.
type Replica struct {
	id      consistency.NodeID
	peers   []consistency.NodeID
	primary consistency.NodeID
	// backupIDs are the peers other than the primary, in peer order.
	backupIDs []consistency.NodeID
	store     *core.Store
	bug       string
	rnd       *rand.Rand
	ackAll    bool

	out consistency.Ready

	// primary state
	seq uint64
	low uint64
	// acked, known and ticked are per backup, in backupIDs order.
	acked    []uint64
	known    []bool
	ticked   []uint64 // acked as of the last tick
	cache    map[uint64][]byte
	waiting  []pending
	lastSend time.Time

	// backup state
	applied uint64
	// appliedBuf is reused for the encoding of applied (the store copies
	// it).
	appliedBuf []byte
	// scratch holds the entry being applied: decoding reuses its array of
	// writes (the store copies what it keeps).
	scratch entry

	// arena makes message bodies and log entries; cmds, keyBuf, logArgs
	// and logCmd are the primary's scratch for a write's transaction (the
	// store keeps no command or argument).
	arena   arena
	cmds    []core.Command
	keyBuf  []byte
	logArgs [2][]byte
	logCmd  [1]core.Command
	// logFn is logEffects as a func value, made once; logSeq, logNow and
	// logRaw pass the entry in the making to and from it.
	logFn  func(*core.Effects) []core.Command
	logSeq uint64
	logNow time.Time
	logRaw []byte
	// raws is sendFrom's scratch list of entries (encodeAppend copies
	// them into the message).
	raws [][]byte
	// moved is a backup's answer to every request, made once: replies
	// are read-only to the driver and clients, so all responses share
	// its error.
	moved core.Reply
}

var _ consistency.Replica = (*Replica)(nil)

// Factory is the strategy's consistency.Factory.
func Factory(cfg consistency.Config) (consistency.Replica, error) { return New(cfg) }

var _ consistency.Factory = Factory

// New starts a replica over cfg.Engine, recovering its sequence numbers
// from what the engine holds.
func New(cfg consistency.Config) (*Replica, error) {
	if len(cfg.Peers) == 0 || !slices.Contains(cfg.Peers, cfg.ID) {
		return nil, fmt.Errorf("primarybackup: node %q is not among the peers %v", cfg.ID, cfg.Peers)
	}
	switch cfg.Bug {
	case "", BugStaleBackupRead, BugAckBeforeReplicate:
	default:
		return nil, fmt.Errorf("primarybackup: unknown bug %q", cfg.Bug)
	}
	r := &Replica{id: cfg.ID, peers: slices.Clone(cfg.Peers), primary: cfg.Peers[0], bug: cfg.Bug, rnd: cfg.Rand, ackAll: true}
	for k, v := range cfg.Params {
		switch k {
		case "primary":
			if !slices.Contains(cfg.Peers, consistency.NodeID(v)) {
				return nil, fmt.Errorf("primarybackup: primary %q is not a peer", v)
			}
			r.primary = consistency.NodeID(v)
		case "ack":
			switch v {
			case "all":
			case "majority":
				r.ackAll = false
			default:
				return nil, fmt.Errorf("primarybackup: ack=%q: want all or majority", v)
			}
		default:
			return nil, fmt.Errorf("primarybackup: unknown parameter %q (known: primary, ack)", k)
		}
	}
	for _, p := range r.peers {
		if p != r.primary {
			r.backupIDs = append(r.backupIDs, p)
		}
	}
	st, err := core.NewStore(cfg.Engine, core.Limits{})
	if err != nil {
		return nil, fmt.Errorf("primarybackup: open store: %w", err)
	}
	r.store = st
	r.logFn = r.logEffects
	r.moved = core.ErrorReply(&core.Error{Code: CodeMoved, Msg: string(r.primary)})
	if r.id == r.primary {
		if r.low, err = r.readMeta(keyLow); err != nil {
			return nil, err
		}
		if r.low == 0 {
			r.low = 1
		}
		// The last sequence number is that of the last log record kept
		// (records from low on are never deleted), or low-1 when every
		// record has been deleted.
		r.seq = r.low - 1
		for {
			rep := r.store.Apply(time.Unix(0, 0), core.Command{Name: "GET", Args: [][]byte{logKey(r.seq + 1)}})
			if rep.IsError() {
				return nil, fmt.Errorf("primarybackup: read log record %d: %w", r.seq+1, rep.Err)
			}
			if rep.Kind == core.KindNil {
				break
			}
			r.seq++
		}
		r.acked = make([]uint64, len(r.backupIDs))
		r.known = make([]bool, len(r.backupIDs))
		r.ticked = make([]uint64, len(r.backupIDs))
		r.cache = map[uint64][]byte{}
	} else if r.applied, err = r.readApplied(); err != nil {
		return nil, err
	}
	return r, nil
}

// readApplied is a backup's last applied sequence number, as its disk
// holds it (0 before the first entry).
func (r *Replica) readApplied() (uint64, error) {
	b, err := r.store.ReplicaMeta(metaApplied)
	switch {
	case err != nil:
		return 0, fmt.Errorf("primarybackup: read the last applied number: %w", err)
	case b == nil:
		return 0, nil
	case len(b) != 8:
		return 0, fmt.Errorf("primarybackup: last applied number of %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}

func (r *Replica) readMeta(key string) (uint64, error) {
	rep := r.store.Apply(time.Unix(0, 0), core.Cmd("GET", key))
	switch {
	case rep.IsError():
		return 0, fmt.Errorf("primarybackup: read %q: %w", key, rep.Err)
	case rep.Kind == core.KindNil:
		return 0, nil
	}
	n, err := strconv.ParseUint(string(rep.Str), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("primarybackup: metadata %q = %q: %w", key, rep.Str, err)
	}
	return n, nil
}

func (r *Replica) backups() []consistency.NodeID { return r.backupIDs }

// backupIndex is id's position among the backups, or -1.
func (r *Replica) backupIndex(id consistency.NodeID) int {
	for i, b := range r.backupIDs {
		if b == id {
			return i
		}
	}
	return -1
}

func (r *Replica) respond(id uint64, rep core.Reply) {
	r.out.Responses = append(r.out.Responses, consistency.Response{ID: id, Reply: rep})
}

func (r *Replica) send(to consistency.NodeID, body []byte) {
	if r.out.Messages == nil {
		r.out.Messages = make([]consistency.Message, 0, len(r.peers)-1)
	}
	r.out.Messages = append(r.out.Messages, consistency.Message{From: r.id, To: to, Body: body})
}

// isRead reports whether a request changes nothing.
func isRead(req consistency.Request) bool {
	return req.Cmd != nil && core.IsReadOnly(req.Cmd.Name)
}

// Request implements consistency.Replica.
func (r *Replica) Request(now time.Time, req consistency.Request) {
	if (req.Cmd == nil) == (req.Txn == nil) {
		r.respond(req.ID, core.ErrorReply(core.Errorf(core.CodeErr, "request needs exactly one of a command and a transaction")))
		return
	}
	if r.id != r.primary {
		if r.bug == BugStaleBackupRead && isRead(req) {
			r.respond(req.ID, r.store.Apply(now, *req.Cmd))
			return
		}
		r.respond(req.ID, r.moved)
		return
	}
	if isRead(req) {
		r.respond(req.ID, r.store.Apply(now, *req.Cmd))
		return
	}
	// The write runs once, here: the entry replicates its effects (the
	// engine writes it made, core.Effects), which backups apply without
	// running it again. logEffects encodes them into the entry and adds
	// its log record to the same transaction. The command slice is the
	// replica's scratch: the store keeps no command or argument.
	var txn core.Txn
	if req.Cmd != nil {
		r.cmds = append(r.cmds[:0], *req.Cmd)
		txn.Cmds = r.cmds
	} else {
		txn = *req.Txn
	}
	n := len(txn.Cmds)
	r.logSeq, r.logNow, r.logRaw = r.seq+1, now, nil
	rep := r.store.ApplyTxnThen(now, txn, r.logFn)
	if rep.IsError() {
		r.respond(req.ID, userError(rep, req))
		return
	}
	raw := r.logRaw
	r.seq = r.logSeq
	r.cache[r.seq] = raw
	var user core.Reply
	if req.Cmd != nil {
		user = rep.Array[0]
	} else {
		user = core.Array(rep.Array[:n]...)
	}
	if r.bug == BugAckBeforeReplicate {
		// Acknowledge at once, durable nowhere yet.
		r.respond(req.ID, user)
	} else {
		r.out.Sync = true
		r.waiting = append(r.waiting, pending{seq: r.seq, id: req.ID, reply: user})
	}
	// One body for every backup: message bodies are never modified (the
	// driver delivers them as they are; decoding only aliases them).
	var body []byte
	for i, b := range r.backups() {
		if r.known[i] {
			if body == nil {
				body = r.arena.keep(encodeAppend(r.arena.room(appendBound(raw)), r.seq, raw))
			}
			r.send(b, body)
		}
	}
	r.release()
}

// logEffects is ApplyTxnThen's then for a write on the primary: it encodes
// the write's effects as entry logSeq (into logRaw) and returns the SET of
// its log record, which commits with the write.
func (r *Replica) logEffects(fx *core.Effects) []core.Command {
	en := entry{Seq: r.logSeq, Now: r.logNow.UnixNano(), Fx: *fx}
	r.logRaw = r.arena.keep(appendEntry(r.arena.room(entryBound(en)), en))
	r.keyBuf = appendLogKey(r.keyBuf[:0], en.Seq)
	r.logArgs = [2][]byte{r.keyBuf, r.logRaw}
	r.logCmd[0] = core.Command{Name: "SET", Args: r.logArgs[:]}
	return r.logCmd[:]
}

// userError strips the transaction wrapping from a single command's error.
func userError(rep core.Reply, req consistency.Request) core.Reply {
	if req.Cmd == nil || rep.Err == nil {
		return rep
	}
	e := *rep.Err
	e.Msg = strings.TrimPrefix(e.Msg, fmt.Sprintf("command 0 (%s): ", strings.ToUpper(req.Cmd.Name)))
	rep.Err = &e
	return rep
}

func logKey(seq uint64) []byte { return appendLogKey(make([]byte, 0, len(logPrefix)+20), seq) }

// appendLogKey appends the key of log record seq to dst.
func appendLogKey(dst []byte, seq uint64) []byte {
	return strconv.AppendUint(append(dst, logPrefix...), seq, 10)
}

// release answers the waiting writes that enough backups hold.
func (r *Replica) release() {
	if len(r.waiting) == 0 {
		return
	}
	bs := r.backups()
	var buf [8]uint64
	acks := buf[:0]
	for i := range bs {
		if r.known[i] {
			acks = append(acks, r.acked[i])
		} else {
			acks = append(acks, 0)
		}
	}
	slices.Sort(acks)
	slices.Reverse(acks)
	need := len(bs) // ack=all
	if !r.ackAll {
		need = len(r.peers) / 2 // with the primary, a majority of the replicas
	}
	committed := r.seq
	if need > 0 {
		committed = acks[need-1]
	}
	i := 0
	for ; i < len(r.waiting) && r.waiting[i].seq <= committed; i++ {
		r.respond(r.waiting[i].id, r.waiting[i].reply)
	}
	// Moved to the front (slices.Delete clears the tail), so the array
	// is reused instead of regrown as answered writes leave it.
	r.waiting = slices.Delete(r.waiting, 0, i)
}

// Receive implements consistency.Replica.
func (r *Replica) Receive(now time.Time, m consistency.Message) {
	if len(m.Body) == 0 {
		return
	}
	d := dec{b: m.Body[1:]}
	switch m.Body[0] {
	case msgAppend:
		if r.id == r.primary {
			return
		}
		_ = d.u() // the primary's last sequence number (for traces)
		n := d.u()
		gap := false
		for i := uint64(0); i < n && d.err == nil; i++ {
			raw := d.bytes()
			if d.err != nil {
				break
			}
			en := &r.scratch
			if err := parseRaw(raw, en); err != nil {
				break
			}
			if en.Seq > r.applied+1 {
				gap = true // an earlier entry was lost or is late
				break
			}
			if en.Seq <= r.applied {
				continue // a duplicate
			}
			// The applied number commits in the same batch as the
			// effects: after a crash the backup resumes exactly after
			// what its disk holds.
			// The entry's keys and values are slices of the message
			// body, which is immutable (consistency.Message): the store
			// keeps them as they are instead of copying each entry.
			r.appliedBuf = binary.BigEndian.AppendUint64(r.appliedBuf[:0], en.Seq)
			if err := r.store.ApplyEffectsMetaOwned(time.Unix(0, en.Now), en.Fx, metaApplied, r.appliedBuf); err != nil {
				// The primary applied it, so only a disk fault fails it
				// here: do not acknowledge; it will be resent.
				gap = true
				break
			}
			r.applied = en.Seq
			r.out.Sync = true
		}
		r.send(m.From, r.arena.keep(encodeAck(r.arena.room(ackBound), r.applied, gap)))
	case msgAck:
		if r.id != r.primary {
			return
		}
		a := d.u()
		gap := d.u() == 1
		if d.err != nil {
			return
		}
		i := r.backupIndex(m.From)
		if i < 0 {
			return
		}
		wasKnown := r.known[i]
		if !wasKnown || a > r.acked[i] {
			r.acked[i] = a
		}
		r.known[i] = true
		r.release()
		if (gap || !wasKnown) && a < r.seq {
			// The backup missed an entry (or answered a probe): resend
			// from there at once
			// (otherwise entries still in flight are not resent; Tick
			// resends to a backup that made no progress).
			r.sendFrom(m.From, a+1)
		}
	}
}

// sendFrom sends backup b the entries from seq on (at most maxBatch).
func (r *Replica) sendFrom(b consistency.NodeID, from uint64) {
	raws := r.raws[:0]
	for s := from; s <= r.seq && len(raws) < maxBatch; s++ {
		raw, ok := r.cache[s]
		if !ok {
			rep := r.store.Apply(time.Unix(0, 0), core.Command{Name: "GET", Args: [][]byte{logKey(s)}})
			if rep.IsError() || rep.Kind == core.KindNil {
				break // a disk fault, or (should not happen) a truncated record
			}
			raw = rep.Str
			r.cache[s] = raw
		}
		raws = append(raws, raw)
	}
	r.send(b, r.arena.keep(encodeAppend(r.arena.room(appendBound(raws...)), r.seq, raws...)))
	clear(raws)
	r.raws = raws[:0]
}

// Tick implements consistency.Replica: the primary probes backups it has not
// heard from, resends what they miss, and deletes log records every backup
// holds.
func (r *Replica) Tick(now time.Time) {
	if r.id != r.primary || now.Sub(r.lastSend) < resendEvery {
		return
	}
	r.lastSend = now
	minAck := r.seq
	for i, b := range r.backups() {
		switch {
		case !r.known[i]:
			r.send(b, r.arena.keep(encodeAppend(r.arena.room(appendBound()), r.seq)))
			minAck = 0
		case r.acked[i] < r.seq && r.acked[i] == r.ticked[i]:
			// No progress since the last tick: resend what it misses.
			r.sendFrom(b, r.acked[i]+1)
		}
		r.ticked[i] = r.acked[i]
		if r.known[i] {
			minAck = min(minAck, r.acked[i])
		}
	}
	if minAck >= r.low {
		hi := min(minAck, r.low+truncBatch-1)
		// The keys share one array (the store keeps no argument).
		del := core.Command{Name: "DEL", Args: make([][]byte, 0, hi-r.low+1)}
		keys := make([]byte, 0, int(hi-r.low+1)*(len(logPrefix)+20))
		for s := r.low; s <= hi; s++ {
			l := len(keys)
			keys = appendLogKey(keys, s)
			del.Args = append(del.Args, keys[l:len(keys):len(keys)])
		}
		cmds := []core.Command{del, {Name: "SET", Args: [][]byte{[]byte(keyLow), strconv.AppendUint(nil, hi+1, 10)}}}
		if rep := r.store.ApplyTxn(now, core.Txn{Cmds: cmds}); !rep.IsError() {
			for s := r.low; s <= hi; s++ {
				delete(r.cache, s)
			}
			r.low = hi + 1
		}
	}
}

// NextTick implements consistency.Sleeper. A backup's Tick does nothing;
// the primary's does nothing until resendEvery after its last working tick
// (Tick returns at once before that: the two conditions are the same
// comparison, now-lastSend < resendEvery).
func (r *Replica) NextTick() time.Time {
	if r.id != r.primary {
		return time.Time{}
	}
	return r.lastSend.Add(resendEvery)
}

var _ consistency.Sleeper = (*Replica)(nil)

// Ready implements consistency.Replica.
//
// The next outputs reuse the arrays of the slices returned: the driver is
// done with a Ready before it calls the replica again (consistency.Replica).
func (r *Replica) Ready() consistency.Ready {
	out := r.out
	r.out = consistency.Ready{Messages: out.Messages[:0], Responses: out.Responses[:0]}
	return out
}

// Dump implements consistency.Replica: the store's user-visible state,
// without the strategy's metadata.
func (r *Replica) Dump(now time.Time) (map[string]string, error) {
	m, err := r.store.Dump(now)
	if err != nil {
		return nil, fmt.Errorf("primarybackup: dump %s: %w", r.id, err)
	}
	for k := range m {
		if strings.HasPrefix(k, metaPrefix) {
			delete(m, k)
		}
	}
	return m, nil
}

// IsPrimary reports whether this replica is the primary.
func (r *Replica) IsPrimary() bool { return r.id == r.primary }
