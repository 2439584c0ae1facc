package core

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Default limits.
const (
	DefaultMaxKeySize     = 64 << 10
	DefaultMaxValueSize   = 1 << 20
	DefaultLargeValueWarn = 512 << 10
)

// Store is one replica's state machine over an Engine. Writes are not safe
// for concurrent use: replication strategies apply commands one at a time,
// in order. The one exception is Read: read-only commands may run
// concurrently with each other (never with a write; a caller guards a Store
// with a sync.RWMutex, Read under the read lock and everything else under
// the write lock).
type Store struct {
	e           Engine
	pf          Prefetcher // e, when it is one (nil: no prefetching)
	lim         Limits
	counter     uint64 // store-wide version counter, see op.put
	indexes     map[string]*indexDef
	stats       Stats // CorruptionsSeen is kept in corrupt instead
	syncCommits bool
	scratch     op // reused by newOp (writers only)
	// fx is ApplyTxnThen's reused Effects (writers only).
	fx Effects
	// readOps are the ops of concurrent Reads (see newReadOp).
	readOps sync.Pool
	// prefetches are PrefetchEach's scratch buffers (*prefetchScratch).
	prefetches sync.Pool
	// corrupt counts records that failed their checksum; atomic because
	// concurrent Reads find them too.
	corrupt atomic.Int64
}

const (
	metaCounter  = "counter"
	metaIndexPfx = "idx/"
	// metaReplicaPfx is where replicas keep their own bookkeeping
	// (ApplyEffectsMeta, ReplicaMeta).
	metaReplicaPfx = "replica/"
)

func metaKey(name string) []byte { return append([]byte{pfxMeta}, name...) }

// NewStore opens a Store over e, loading its metadata (version counter,
// index definitions) and counting its keys.
func NewStore(e Engine, l Limits) (*Store, error) {
	if l.MaxKeySize <= 0 {
		l.MaxKeySize = DefaultMaxKeySize
	}
	if l.MaxValueSize <= 0 {
		l.MaxValueSize = DefaultMaxValueSize
	}
	if l.LargeValueWarn <= 0 {
		l.LargeValueWarn = DefaultLargeValueWarn
	}
	s := &Store{e: e, lim: l}
	s.pf, _ = e.(Prefetcher)
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the metadata and key count from the engine.
func (s *Store) load() error {
	s.counter = 0
	s.indexes = map[string]*indexDef{}
	s.stats.Keys = 0
	b, err := s.e.Get(metaKey(metaCounter))
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return fmt.Errorf("core: read version counter: %w", err)
	default:
		if s.counter, err = decodeCounter(b); err != nil {
			return fmt.Errorf("core: %w", err)
		}
	}
	it := s.e.NewIter(metaKey(metaIndexPfx), prefixEnd(metaKey(metaIndexPfx)))
	for it.First(); it.Valid(); it.Next() {
		def, err := decodeIndexDef(it.Key(), it.Value())
		if err != nil {
			it.Close()
			return fmt.Errorf("core: index definition %q: %w", it.Key(), err)
		}
		s.indexes[def.name] = def
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("core: read index definitions: %w", err)
	}
	it = s.e.NewIter([]byte{pfxData}, []byte{pfxData + 1})
	for it.First(); it.Valid(); it.Next() {
		s.stats.Keys++
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("core: count keys: %w", err)
	}
	return nil
}

// Engine returns the store's engine.
func (s *Store) Engine() Engine { return s.e }

// Limits returns the store's limits, defaults filled in.
func (s *Store) Limits() Limits { return s.lim }

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	st := s.stats
	st.CorruptionsSeen = s.corrupt.Load()
	return st
}

// SetSyncCommits makes every commit synced (Commit(true)) when on; the
// default leaves syncing to the engine's policy or the caller's Engine.Sync.
func (s *Store) SetSyncCommits(on bool) { s.syncCommits = on }

// Apply executes one command at time now. The command's writes reach the
// engine in one atomic batch; a command that fails changes nothing.
func (s *Store) Apply(now time.Time, c Command) Reply {
	o := s.newOp(now)
	r := o.run(c)
	if r.IsError() {
		o.discard()
		return r
	}
	if err := o.commit(); err != nil {
		return ErrorReply(AsError(err))
	}
	return r
}

// Read executes a read-only command (one whose table entry is readOnly:
// GET, MGET, EXISTS, TTL, HGET, LRANGE, SCAN.*, IDX.QUERY, ... see
// IsReadOnly) at time now. It returns the same reply Apply would.
//
// Reads may run concurrently with each other, never with a write (Apply,
// ApplyTxn, ExpireStep, RestoreSnapshot, ...). That is safe because:
//
//   - each Read has an op of its own (newReadOp), not the writers' scratch op;
//   - a read-only command never writes, not even for a key it finds expired:
//     reads treat an expired key as absent and leave its removal to the next
//     write of the key or to ExpireStep, which run under the write lock
//     (the model tests check that read-only commands leave the engine
//     byte-for-byte unchanged);
//   - the only store state a read updates, the corruption counter, is
//     atomic; the engines' Get and NewIter are safe for concurrent readers.
//
// A command that is not read-only gets an ERR reply and changes nothing. A
// read-only command whose handler buffered a write anyway (a bug) gets an
// ERR reply too, and the write is dropped.
func (s *Store) Read(now time.Time, c Command) Reply {
	spec, ok := commandTable[strings.ToUpper(c.Name)]
	if ok && !spec.readOnly {
		return ErrorReply(Errorf(CodeErr, "'%s' is not a read-only command", strings.ToLower(spec.name)))
	}
	o := s.newReadOp(now)
	r := o.run(c)
	if len(o.writes.ws) != 0 || o.counter != s.counter || len(o.idxChanges) != 0 {
		r = ErrorReply(Errorf(CodeErr, "read-only command '%s' tried to write (dropped)", c.Name))
	}
	o.discard()
	s.putReadOp(o)
	return r
}

// run looks the command up, checks arity and key sizes, and calls its
// handler.
func (o *op) run(c Command) Reply {
	spec, ok := commandTable[strings.ToUpper(c.Name)]
	if !ok {
		return ErrorReply(Errorf(CodeUnknownCommand, "unknown command '%s'", c.Name))
	}
	n := len(c.Args) + 1
	if (spec.arity > 0 && n != spec.arity) || (spec.arity < 0 && n < -spec.arity) {
		return ErrorReply(Errorf(CodeErr, "wrong number of arguments for '%s' command", strings.ToLower(spec.name)))
	}
	if n := longKey(spec, c.Args, o.s.lim.MaxKeySize); n >= 0 {
		return ErrorReply(Errorf(CodeKeyTooLarge, "key of %d bytes exceeds the limit of %d bytes", n, o.s.lim.MaxKeySize))
	}
	o.lastVer = 0
	r := spec.handler(o, c.Args)
	if spec.first == 1 && spec.last == 1 && !r.IsError() && r.Version == 0 {
		r.Version = o.lastVer
	}
	return r
}

// fail turns an error into an error reply.
func fail(err error) Reply { return ErrorReply(AsError(err)) }

// ApplyTxn executes a transaction at time now: if every condition holds,
// every command runs, in order, and their writes reach the engine in one
// batch; the reply is an Array of the commands' replies. If a condition
// fails the reply is a CodeConditionFailed error naming it ("0: version of k
// is 3, want 2") with the key's current Version; if a command fails, the
// reply is that command's error prefixed with its index. Either way nothing
// changes.
func (s *Store) ApplyTxn(now time.Time, t Txn) Reply { return s.runTxn(now, t, true) }

// TryTxn evaluates a transaction at time now exactly as ApplyTxn does and
// returns the same reply, but commits nothing: the state is unchanged.
// Two-phase commit (consistency/raft txn.go) votes with it at prepare and
// applies the same transaction with ApplyTxn at commit.
func (s *Store) TryTxn(now time.Time, t Txn) Reply { return s.runTxn(now, t, false) }

// runTxn evaluates t and commits its writes when commit is set.
func (s *Store) runTxn(now time.Time, t Txn, commit bool) Reply {
	o := s.newOp(now)
	r := o.runTxn(t)
	if r.IsError() || !commit {
		o.discard()
		return r
	}
	if err := o.commit(); err != nil {
		return fail(err)
	}
	return r
}

// runTxn runs a transaction's conditions and commands in the op; on an
// error reply the caller drops the op's writes.
func (o *op) runTxn(t Txn) Reply {
	for i, c := range t.Conds {
		if e := o.checkCond(c); e != nil {
			if e.Code == CodeConditionFailed {
				e.Condition = fmt.Sprintf("%d: %s", i, e.Condition)
				e.Msg = e.Condition
			}
			return Reply{Kind: KindError, Err: e, Version: e.Version}
		}
	}
	replies := make([]Reply, 0, len(t.Cmds))
	for i, c := range t.Cmds {
		r := o.run(c)
		if r.IsError() {
			e := *r.Err
			e.Msg = fmt.Sprintf("command %d (%s): %s", i, strings.ToUpper(c.Name), e.Msg)
			return Reply{Kind: KindError, Err: &e, Version: r.Version}
		}
		replies = append(replies, r)
	}
	return Array(replies...)
}

// BatchEntry is one entry of ApplyBatch: the transaction Txn when it is
// set, else the command Cmd.
type BatchEntry struct {
	Cmd *Command
	Txn *Txn
}

// ApplyBatch applies entries in order at time now, with the replies
// len(entries) calls of Apply (or ApplyTxn) would give, into replies (which
// must have len(entries) elements), but writes them to the engine as one
// batch: one commit, one WAL write (and one fsync when commits sync), for
// a client's batch of commands. Each entry is still atomic on its own: one
// that fails changes nothing (the op rolls back to a savepoint taken before
// it) and the others apply; later entries see earlier ones' writes. If the
// commit itself fails, nothing is written and every entry that had
// succeeded gets that error instead of its reply. An entry with neither Cmd
// nor Txn gets an ERR reply.
func (s *Store) ApplyBatch(now time.Time, entries []BatchEntry, replies []Reply) {
	s.Prefetch(entries)
	o := s.newOp(now)
	for i, en := range entries {
		sp := o.save()
		var r Reply
		switch {
		case en.Txn != nil:
			r = o.runTxn(*en.Txn)
		case en.Cmd != nil:
			r = o.run(*en.Cmd)
		default:
			r = ErrorReply(Errorf(CodeErr, "empty batch entry"))
		}
		if r.IsError() {
			o.rollback(sp)
		}
		replies[i] = r
	}
	if err := o.commit(); err != nil {
		e := ErrorReply(AsError(err))
		for i := range replies {
			if !replies[i].IsError() {
				replies[i] = e
			}
		}
	}
}

// prefetchMin is the smallest batch Prefetch hands to the engine: for one
// or two commands there are no misses to overlap.
const prefetchMin = 4

// Prefetch hints to the engine (a Prefetcher) that the records of the keys
// entries name are about to be read: ApplyBatch calls it, and a caller that
// runs a batch of read-only commands through Read calls it first (or
// PrefetchEach). It reads nothing that a Read may not (it is safe under the
// read lock, concurrently with Reads) and changes nothing: replies and
// state are the same without it, only slower.
func (s *Store) Prefetch(entries []BatchEntry) {
	s.PrefetchEach(len(entries), func(i int) *Command { return entries[i].Cmd })
}

// PrefetchEach is Prefetch for the n commands cmd(0), ..., cmd(n-1) (a nil
// one names no key): for a caller whose batch is not a list of
// BatchEntry, without building one. cmd is called at most once per
// command (not at all when the engine has no prefetcher or the batch is
// shorter than prefetchMin), in order, during the call.
func (s *Store) PrefetchEach(n int, cmd func(i int) *Command) {
	if s.pf == nil || n < prefetchMin {
		return
	}
	// The data keys go into one reused buffer (ends[k] is where key k
	// ends), in one pass with one command-table lookup per command; the
	// key slices are cut once the buffer has stopped growing.
	sc, _ := s.prefetches.Get().(*prefetchScratch)
	if sc == nil {
		sc = &prefetchScratch{}
	}
	buf, ends := sc.buf[:0], sc.ends[:0]
	for i := range n {
		c := cmd(i)
		if c == nil {
			continue
		}
		first, last, step := keyPositions(*c)
		for k := first; first > 0 && k <= last; k += step {
			buf = append(append(buf, pfxData), c.Args[k-1]...)
			ends = append(ends, len(buf))
		}
	}
	if len(ends) >= prefetchMin {
		keys, start := sc.keys[:0], 0
		for _, end := range ends {
			keys = append(keys, buf[start:end:end])
			start = end
		}
		s.pf.Prefetch(keys)
		clear(keys) // (no references kept to the buffer's old contents)
		sc.keys = keys
	}
	if cap(buf) <= maxPrefetchScratch {
		sc.buf, sc.ends = buf, ends
		s.prefetches.Put(sc)
	}
}

// prefetchScratch is PrefetchEach's reused memory (concurrent Reads'
// prefetches each take their own from Store.prefetches).
type prefetchScratch struct {
	buf  []byte
	ends []int
	keys [][]byte
}

// maxPrefetchScratch bounds the key buffer a prefetch gives back for reuse
// (a batch of huge keys does not keep its buffer).
const maxPrefetchScratch = 64 << 10

// checkCond evaluates one condition; nil when it holds.
func (o *op) checkCond(c Condition) *Error {
	r, err := o.load(c.Key)
	if err != nil {
		return AsError(err)
	}
	var cur uint64
	if r != nil {
		cur = r.version
	}
	failed := func(format string, args ...any) *Error {
		msg := fmt.Sprintf(format, args...)
		return &Error{Code: CodeConditionFailed, Msg: msg, Condition: msg, Version: cur}
	}
	switch c.Kind {
	case CondVersion:
		if cur != c.Version {
			return failed("version of %s is %d, want %d", quoteArg(c.Key), cur, c.Version)
		}
	case CondValue:
		if r == nil {
			return failed("value of %s: key does not exist", quoteArg(c.Key))
		}
		if r.typ != TypeString {
			return failed("value of %s: key holds a %s, not a string", quoteArg(c.Key), r.typ)
		}
		if string(r.payload) != string(c.Value) {
			return failed("value of %s differs", quoteArg(c.Key))
		}
	case CondExists:
		if r == nil {
			return failed("%s does not exist", quoteArg(c.Key))
		}
	case CondAbsent:
		if r != nil {
			return failed("%s exists", quoteArg(c.Key))
		}
	default:
		return Errorf(CodeErr, "unknown condition kind %d", c.Kind)
	}
	return nil
}
