package raft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// The coordinator of cross-shard transactions (two-phase commit; the state
// machine's side is txn.go, the design docs/raft.md). The node that
// receives a request whose keys span shards coordinates it:
//
//  1. split it into one part per shard (plan);
//  2. prepare every part, as a Raft proposal to its shard, concurrently;
//  3. decide: commit if every shard voted yes, else abort; the decision is
//     proposed to the coordinator shard (the lowest shard of the
//     transaction), whose state machine keeps the first decision proposed
//     and answers it: that answer is the decision;
//  4. send the decision to every prepared shard and wait for them; the
//     reply is assembled from the commits' replies.
//
// Ordering rules: the decision is proposed only after every prepare
// answered yes (a commit recorded with a vote missing could apply half a
// transaction: brokenTxnCommit shows it); the client is answered only
// after every participant applied the commit (a later read of any key
// sees the transaction). A transaction that lost a prepare to a lock
// conflict is aborted and run again (a new ID) after a pause, until the
// request's deadline. Intents older than Config.TxnRecoverAfter are
// resolved by anyone who meets them (resolveStale): the decision is
// asked of the coordinator shard by proposing abort (the first decision
// wins, so this either aborts an undecided transaction or learns its
// commit), then applied to the participant.

// txnRetryKey marks a context whose request must not be retried on a
// TXNCONFLICT reply (the retry loop's own calls).
type txnRetryKey struct{}

// part is one shard's share of a cross-shard transaction.
type part struct {
	txn core.Txn
	// condIdx and cmdIdx map the part's conditions and commands to the
	// request's (for error messages and replies).
	condIdx, cmdIdx []int
}

// piece locates a piece of a request's command: command cmdIdx of the
// part of shard sh; keys, for a split MGET/EXISTS, the positions of the
// piece's keys among the command's keys.
type piece struct {
	sh, idx int
	keys    []int
}

// plan is a request split into parts.
type plan struct {
	parts  map[int]*part
	shards []int     // ascending
	pieces [][]piece // per request command
	names  []string  // per request command, upper case
	single bool      // the request was one command, not a transaction
}

// splittable commands are split into one command per shard; their replies
// are combined (combine).
var splittable = map[string]int{"MSET": 2, "MGET": 1, "DEL": 1, "UNLINK": 1, "EXISTS": 1} // value: arguments per key

// planTxn splits a request (a command or a transaction) by shard.
func (s *Service) planTxn(req consistency.Request) (*plan, *core.Error) {
	t := core.Txn{}
	p := &plan{parts: map[int]*part{}}
	switch {
	case req.Cmd != nil:
		t.Cmds = []core.Command{*req.Cmd}
		p.single = true
	case req.Txn != nil:
		t = *req.Txn
	}
	get := func(sh int) *part {
		pt, ok := p.parts[sh]
		if !ok {
			pt = &part{}
			p.parts[sh] = pt
			p.shards = append(p.shards, sh)
		}
		return pt
	}
	shardOf := func(k []byte) int { return core.ShardOf(k, s.cfg.Shards) }
	for i, c := range t.Conds {
		pt := get(shardOf(c.Key))
		pt.txn.Conds = append(pt.txn.Conds, c)
		pt.condIdx = append(pt.condIdx, i)
	}
	for i, c := range t.Cmds {
		name := strings.ToUpper(c.Name)
		p.names = append(p.names, name)
		keys := core.CommandKeys(c)
		if len(keys) == 0 {
			return nil, &core.Error{Code: CodeCrossShard, Msg: fmt.Sprintf(
				"command %d (%s) of a cross-shard transaction touches no key and would span all %d shards", i, name, s.cfg.Shards)}
		}
		sh := shardOf(keys[0])
		one := true
		for _, k := range keys[1:] {
			one = one && shardOf(k) == sh
		}
		if one {
			pt := get(sh)
			pt.txn.Cmds = append(pt.txn.Cmds, c)
			pt.cmdIdx = append(pt.cmdIdx, i)
			p.pieces = append(p.pieces, []piece{{sh: sh, idx: len(pt.txn.Cmds) - 1}})
			continue
		}
		per, ok := splittable[name]
		if !ok || len(c.Args)%per != 0 {
			return nil, &core.Error{Code: CodeCrossShard, Msg: fmt.Sprintf(
				"keys of %s live on several shards and %s is not split across shards (MSET, MGET, DEL, UNLINK and EXISTS are); put them on one shard with a hash tag such as {user42}:key", name, name)}
		}
		byShard := map[int]*piece{}
		var order []int
		args := map[int][][]byte{}
		for j := 0; j < len(c.Args); j += per {
			ksh := shardOf(c.Args[j])
			pc, ok := byShard[ksh]
			if !ok {
				pc = &piece{sh: ksh}
				byShard[ksh] = pc
				order = append(order, ksh)
			}
			pc.keys = append(pc.keys, j/per)
			args[ksh] = append(args[ksh], c.Args[j:j+per]...)
		}
		var ps []piece
		for _, ksh := range order {
			pt := get(ksh)
			pt.txn.Cmds = append(pt.txn.Cmds, core.Command{Name: c.Name, Args: args[ksh]})
			pt.cmdIdx = append(pt.cmdIdx, i)
			pc := byShard[ksh]
			pc.idx = len(pt.txn.Cmds) - 1
			ps = append(ps, *pc)
		}
		p.pieces = append(p.pieces, ps)
	}
	sort.Ints(p.shards)
	return p, nil
}

// readOnly reports whether every command of the transaction only reads.
func (p *plan) readOnly() bool {
	for _, pt := range p.parts {
		for _, c := range pt.txn.Cmds {
			if !core.IsReadOnly(c.Name) {
				return false
			}
		}
	}
	return true
}

// combine assembles a request's reply from the parts' replies (each an
// Array, one element per part command).
func (p *plan) combine(replies map[int]core.Reply) (core.Reply, error) {
	out := make([]core.Reply, len(p.pieces))
	elem := func(pc piece) (core.Reply, error) {
		r := replies[pc.sh]
		if r.Kind != core.KindArray || pc.idx >= len(r.Array) {
			return core.Reply{}, fmt.Errorf("raft: reply of shard %d to a cross-shard transaction: %v", pc.sh, r)
		}
		return r.Array[pc.idx], nil
	}
	for i, ps := range p.pieces {
		if len(ps) == 1 && ps[0].keys == nil {
			r, err := elem(ps[0])
			if err != nil {
				return r, err
			}
			out[i] = r
			continue
		}
		switch p.names[i] {
		case "MSET":
			out[i] = core.OK()
		case "MGET":
			n := 0
			for _, pc := range ps {
				n += len(pc.keys)
			}
			arr := make([]core.Reply, n)
			for _, pc := range ps {
				r, err := elem(pc)
				if err != nil {
					return r, err
				}
				if r.Kind != core.KindArray || len(r.Array) != len(pc.keys) {
					return core.Reply{}, fmt.Errorf("raft: MGET piece of shard %d answered %v", pc.sh, r)
				}
				for j, k := range pc.keys {
					arr[k] = r.Array[j]
				}
			}
			out[i] = core.Array(arr...)
		default: // DEL, UNLINK, EXISTS: counts
			var n int64
			for _, pc := range ps {
				r, err := elem(pc)
				if err != nil {
					return r, err
				}
				n += r.Int
			}
			out[i] = core.Int(n)
		}
	}
	if p.single {
		return out[0], nil
	}
	return core.Array(out...), nil
}

// renumber rewrites a part's error reply (a failed condition or command,
// numbered within the part) with the request's numbering.
func (p *plan) renumber(sh int, r core.Reply) core.Reply {
	pt := p.parts[sh]
	e := *r.Err
	fix := func(s string, idx []int, pre string) string {
		var j int
		var rest string
		if n, _ := fmt.Sscanf(s, pre+"%d", &j); n == 1 && j >= 0 && j < len(idx) {
			rest = strings.TrimPrefix(s, fmt.Sprintf(pre+"%d", j))
			return fmt.Sprintf(pre+"%d", idx[j]) + rest
		}
		return s
	}
	if e.Code == core.CodeConditionFailed {
		e.Condition = fix(e.Condition, pt.condIdx, "")
		e.Msg = fix(e.Msg, pt.condIdx, "")
	} else {
		e.Msg = fix(e.Msg, pt.cmdIdx, "command ")
	}
	return core.Reply{Kind: core.KindError, Err: &e, Version: r.Version}
}

// newTxnID returns a fresh transaction ID: this incarnation's proposer ID
// and a sequence number.
func (s *Service) newTxnID() TxnID {
	var id TxnID
	binary.BigEndian.PutUint64(id[:8], s.proposer)
	binary.BigEndian.PutUint64(id[8:], s.seq.Add(1))
	return id
}

// txnRecoverAfter is Config.TxnRecoverAfter or its default.
func (s *Service) txnRecoverAfter() time.Duration {
	if s.cfg.TxnRecoverAfter > 0 {
		return s.cfg.TxnRecoverAfter
	}
	return defaultTxnRecoverAfter
}

// defaultTxnRecoverAfter is how old a prepared intent must be before
// anyone who meets it resolves it (Config.TxnRecoverAfter).
const defaultTxnRecoverAfter = 2 * time.Second

// proposeTxnOp proposes a two-phase commit operation to shard sh (hosted
// here) and returns its reply. Errors: consistency.ErrUnavailable (not
// applied) or consistency.ErrTimeout (unknown).
func (s *Service) proposeTxnOp(ctx context.Context, sh int, o txnOp) (core.Reply, error) {
	return s.proposeTxnOpAt(ctx, sh, o, s.cfg.Clock().UnixNano())
}

// proposeTxnOpAt is proposeTxnOp with the proposal stamped now. A shard
// this node does not host is reached through another node
// (proposeRemote, txnremote.go).
func (s *Service) proposeTxnOpAt(ctx context.Context, sh int, o txnOp, now int64) (core.Reply, error) {
	s.stagger(staggerKey(o.id), 1)
	p := proposal{now: now, proposer: s.proposer, seq: s.seq.Add(1), tx: &o}
	data := encodeProposal(p)
	if s.Hosts(sh) {
		return s.proposeTxnData(ctx, sh, data)
	}
	return s.proposeRemote(ctx, sh, data)
}

// proposeTxnData proposes an encoded two-phase commit proposal to shard sh,
// hosted here, and returns its reply.
func (s *Service) proposeTxnData(ctx context.Context, sh int, data []byte) (core.Reply, error) {
	res, copies, err := s.propose(ctx, s.ShardID(sh), data)
	if err != nil {
		return core.Reply{}, fmt.Errorf("raft: two-phase commit, shard %d on %s: %w", sh, s.cfg.NodeID, err)
	}
	r, err := core.DecodeReply(res.Data)
	if err != nil {
		return core.Reply{}, fmt.Errorf("raft: decode reply of shard %d: %w", sh, err)
	}
	if r.IsError() {
		switch {
		case r.Err.Code == CodeNotApplied && copies <= 1:
			return r, fmt.Errorf("raft: two-phase commit, shard %d: %w: %s", sh, consistency.ErrUnavailable, r.Err.Msg)
		case r.Err.Code == CodeNotApplied, r.Err.Code == CodeDuplicate:
			return r, fmt.Errorf("raft: two-phase commit, shard %d: %w: %s", sh, consistency.ErrTimeout, r.Err.Msg)
		}
	}
	return r, nil
}

// stagger sleeps (n + staggerSlots*(key%staggerKeys))*Config.TxnStagger
// (nothing when it is 0): the simulator's virtual clock then moves on, and
// whatever Raft did at the instant the caller woke up is finished before
// it proposes or reads. key spreads callers that wake at one instant (the
// waiters of one applied batch of entries) over distinct instants, so
// that the order of their proposals is not the goroutine scheduler's: it
// is the transaction's ID (or the request's), n orders one transaction's
// concurrent proposals (shard order). Ordering rule: two waiters whose
// keys differ modulo staggerKeys, each with n < staggerSlots, never
// propose at the same instant.
func (s *Service) stagger(key uint64, n int) {
	if s.cfg.TxnStagger > 0 {
		time.Sleep(time.Duration(n+staggerSlots*int(key%staggerKeys)) * s.cfg.TxnStagger)
	}
}

const (
	staggerSlots = 16   // n values per key: a transaction's shards, plus one
	staggerKeys  = 1021 // key classes (prime): at most ~16 µs at 1 ns
)

// staggerKey is a transaction's stagger key (stagger).
func staggerKey(id TxnID) uint64 {
	return binary.BigEndian.Uint64(id[:8])*31 + binary.BigEndian.Uint64(id[8:])
}

// each runs f for every shard of shards concurrently (the i-th after
// i*Config.TxnStagger: stagger's n) and returns the results by shard.
func (s *Service) each(shards []int, f func(sh int) (core.Reply, error)) (map[int]core.Reply, map[int]error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	replies, errs := map[int]core.Reply{}, map[int]error{}
	for i, sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stagger(0, i)
			r, err := f(sh)
			mu.Lock()
			defer mu.Unlock()
			replies[sh] = r
			if err != nil {
				errs[sh] = err
			}
		}()
	}
	wg.Wait()
	return replies, errs
}

// doCrossShard runs a request whose keys span shards as a cross-shard
// transaction, again after lock conflicts, until ctx ends.
func (s *Service) doCrossShard(ctx context.Context, req consistency.Request) (consistency.Response, error) {
	resp := consistency.Response{ID: req.ID}
	pl, perr := s.planTxn(req)
	if perr != nil {
		resp.Reply = core.ErrorReply(perr)
		return resp, nil
	}
	for _, sh := range pl.shards {
		if !s.Hosts(sh) && s.cfg.Peer == nil {
			resp.Reply = core.ErrorReply(&core.Error{Code: CodeCrossShard, Msg: fmt.Sprintf(
				"%s hosts no replica of %s and has no way to reach other nodes (Config.Peer): send the transaction to a node hosting every shard it touches",
				s.cfg.NodeID, shardName(sh, s.cfg.Shards))})
			return resp, nil
		}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	for attempt := 1; ; attempt++ {
		r, conflict, err := s.runTxn(ctx, pl)
		if err != nil || conflict == nil {
			resp.Reply = r
			return resp, err
		}
		// A lock conflict: nothing was applied. Resolve the holder if it
		// is stale, pause, and run again.
		s.resolveStale(ctx, conflict.shard, req.ID)
		if !s.txnPause(ctx, attempt) {
			return resp, lockedErr(conflict.reply)
		}
	}
}

// txnPause waits before retry attempt (a few RTTs, growing, plus up to
// one RTT taken from the sequence counter so that two transactions that
// keep meeting each other's locks drift apart); false when ctx ended.
func (s *Service) txnPause(ctx context.Context, attempt int) bool {
	d := s.cfg.RTT*time.Duration(min(attempt, 8)) + s.cfg.RTT*time.Duration(s.seq.Load()%8)/8
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// txnConflict is a prepare refused by a lock.
type txnConflict struct {
	shard int
	reply core.Reply
}

// runTxn runs one attempt of a planned transaction. conflict is set when
// a prepare met a lock (the attempt was aborted, nothing applied).
func (s *Service) runTxn(ctx context.Context, pl *plan) (core.Reply, *txnConflict, error) {
	id := s.newTxnID()
	coord := pl.shards[0]
	// start is the transaction's reference time: its prepares are stamped
	// with it, so every intent's prepare clock is at least start, and an
	// abort recorded by a recovery (whose reference is that clock) is
	// collected only once a commit decision of reference start is refused
	// (txn.go, "Collection of decisions").
	start := s.cfg.Clock().UnixNano()
	// Phase 1: prepare every part.
	votes, errs := s.each(pl.shards, func(sh int) (core.Reply, error) {
		return s.proposeTxnOpAt(ctx, sh, txnOp{op: txnOpPrepare, id: id, coord: coord, part: pl.parts[sh].txn}, start)
	})
	decision := decisionCommit
	var no *core.Reply // the first "no" vote, by shard order
	var conflict *txnConflict
	for _, sh := range pl.shards {
		if errs[sh] != nil {
			decision = decisionAbort
			continue
		}
		if v := votes[sh]; v.IsError() {
			decision = decisionAbort
			if v.Err.Code == CodeTxnConflict {
				if conflict == nil {
					conflict = &txnConflict{shard: sh, reply: v}
				}
			} else if no == nil {
				r := pl.renumber(sh, v)
				no = &r
			}
		}
	}
	if decision == decisionCommit && pl.readOnly() && !s.cfg.brokenTxnCommit {
		// Every part only reads: every lock was held at once when the
		// last prepare applied, so the votes read one state of all the
		// keys. Nothing to commit: release the locks (abort), no decision
		// record (an intent whose release fails is resolved to abort).
		s.each(pl.shards, func(sh int) (core.Reply, error) {
			return s.proposeTxnOp(ctx, sh, txnOp{op: txnOpAbort, id: id})
		})
		out, err := pl.combine(votes)
		return out, nil, err
	}
	if s.cfg.brokenTxnCommit {
		// BROKEN (tests only): decide on the coordinator shard's vote
		// alone, as if the others had voted yes.
		decision = decisionCommit
		if errs[coord] != nil || votes[coord].IsError() {
			decision = decisionAbort
		}
	}
	// Phase 2: a commit is recorded on the coordinator shard first; its
	// answer is the decision (recovery may have recorded abort first). An
	// abort needs no record: only this coordinator ever proposes commit,
	// and recovery records abort when it finds none.
	decided := decisionAbort
	if decision == decisionCommit {
		dr, err := s.proposeTxnOp(ctx, coord, txnOp{op: txnOpDecide, id: id, decision: decision, ref: start, shards: pl.shards})
		if err != nil {
			if errors.Is(err, consistency.ErrUnavailable) {
				decision = decisionAbort // certainly not recorded: abort
			} else {
				// Maybe recorded: the intents stay until resolveStale
				// learns the decision.
				return core.Reply{}, nil, fmt.Errorf("raft: decide transaction %s: %w", id, err)
			}
		} else if dr.Kind != core.KindInt {
			return core.Reply{}, nil, fmt.Errorf("raft: decide transaction %s: answer %v", id, dr)
		} else if dr.Int == 1 {
			decided = decisionCommit
		}
	}
	// Phase 3: apply the decision on every shard that may hold an intent.
	op := txnOpAbort
	if decided == decisionCommit {
		op = txnOpCommit
	}
	var targets []int
	for _, sh := range pl.shards {
		if decided == decisionCommit || errs[sh] != nil || !votes[sh].IsError() {
			targets = append(targets, sh)
		}
	}
	replies, cerrs := s.each(targets, func(sh int) (core.Reply, error) {
		return s.proposeTxnOp(ctx, sh, txnOp{op: byte(op), id: id})
	})
	if decided == decisionAbort {
		// Intents whose abort failed stay locked until resolveStale.
		if decision == decisionCommit { // recovery aborted it first
			return core.Reply{}, nil, fmt.Errorf("raft: transaction %s was aborted by recovery (a prepare took longer than %v): %w",
				id, s.txnRecoverAfter(), consistency.ErrUnavailable)
		}
		if no == nil && conflict == nil && len(errs) == 0 { // the decision could not be recorded
			return core.Reply{}, nil, fmt.Errorf("raft: transaction %s aborted: its commit could not be recorded: %w", id, consistency.ErrUnavailable)
		}
		return s.failedTxn(no, conflict, errs)
	}
	for _, sh := range targets {
		if cerrs[sh] != nil {
			// Committed (the decision is recorded) but not yet applied
			// here; resolveStale applies it later. The client learns an
			// unknown outcome.
			return core.Reply{}, nil, fmt.Errorf("raft: transaction %s committed, shard %d not yet applied: %w: %w",
				id, sh, consistency.ErrTimeout, cerrs[sh])
		}
		if r := replies[sh]; r.IsError() {
			if r.Err.Code == CodeTxnUnknown { // another driver committed it: use the vote
				replies[sh] = votes[sh]
				continue
			}
			return core.Reply{}, nil, fmt.Errorf("raft: transaction %s: commit on shard %d answered %s", id, sh, r.Err.Msg)
		}
	}
	// Every participant applied the commit: the decision record can go
	// (if this fails, the recovery sweep acknowledges later).
	_, _ = s.proposeTxnOp(ctx, coord, txnOp{op: txnOpAck, id: id, shards: targets})
	out, err := pl.combine(replies)
	return out, nil, err
}

// failedTxn is the outcome of an aborted attempt: the first "no" vote, a
// conflict (retried), or the error of a prepare.
func (s *Service) failedTxn(no *core.Reply, conflict *txnConflict, errs map[int]error) (core.Reply, *txnConflict, error) {
	switch {
	case no != nil:
		return *no, nil, nil
	case conflict != nil:
		return core.Reply{}, conflict, nil
	}
	var shards []int
	for sh := range errs {
		shards = append(shards, sh)
	}
	sort.Ints(shards)
	err := errs[shards[0]]
	if errors.Is(err, consistency.ErrTimeout) {
		// The prepare may have been applied; the transaction was aborted
		// (or will be by recovery): it did not take effect.
		err = fmt.Errorf("%w (the transaction was aborted)", consistency.ErrUnavailable)
	}
	return core.Reply{}, nil, err
}

// retryConflict retries a single-shard request refused by a lock
// (TXNCONFLICT) until ctx ends, resolving stale intents of shard sh.
func (s *Service) retryConflict(ctx context.Context, req consistency.Request, sh int, resp consistency.Response) (consistency.Response, error) {
	ctx = context.WithValue(ctx, txnRetryKey{}, true)
	for attempt := 1; ; attempt++ {
		s.resolveStale(ctx, sh, req.ID)
		if !s.txnPause(ctx, attempt) {
			return consistency.Response{ID: req.ID}, lockedErr(resp.Reply)
		}
		r, err := s.Do(ctx, req)
		if err != nil || !r.Reply.IsError() || r.Reply.Err.Code != CodeTxnConflict {
			return r, err
		}
		resp = r
	}
}

// lockedErr is the error of a request still refused by a lock
// (TXNCONFLICT reply r) at its deadline: it certainly did not take effect.
func lockedErr(r core.Reply) error {
	return fmt.Errorf("raft: %s: %w", r.Err.Msg, consistency.ErrUnavailable)
}

// resolveStale resolves the intents of shard sh prepared more than
// Config.TxnRecoverAfter ago (by the state machine's clock against this
// node's); errors are left for the next caller. key is the stagger key of
// the caller's request.
func (s *Service) resolveStale(ctx context.Context, sh int, key uint64) {
	if !s.Hosts(sh) {
		return
	}
	s.stagger(key, 1)
	v, err := s.nh.StaleRead(s.ShardID(sh), txnIntentsQuery{})
	if err != nil {
		return
	}
	cutoff := s.cfg.Clock().Add(-s.txnRecoverAfter()).UnixNano()
	for _, in := range v.([]IntentInfo) {
		if in.Now < cutoff {
			_ = s.ResolveTxn(ctx, sh, in)
		}
	}
}

// ResolveTxn settles intent in of shard sh: it proposes abort to the
// transaction's coordinator shard (the first decision recorded wins, so
// this aborts an undecided transaction or learns its decision) and applies
// the decision on sh; a commit applied is acknowledged to the coordinator
// shard (the decision record is collected once every participant has).
func (s *Service) ResolveTxn(ctx context.Context, sh int, in IntentInfo) error {
	dr, err := s.proposeTxnOp(ctx, in.Coord, txnOp{op: txnOpDecide, id: in.ID, decision: decisionAbort, ref: in.Now})
	if err != nil {
		return err
	}
	if dr.Kind != core.KindInt || dr.Int != 1 {
		_, err = s.proposeTxnOp(ctx, sh, txnOp{op: txnOpAbort, id: in.ID})
		return err
	}
	return s.commitAndAck(ctx, in.ID, in.Coord, []int{sh})
}

// commitAndAck applies the recorded commit of transaction id on shards
// and acknowledges those that applied it (now or before: TXNUNKNOWN) to
// the coordinator shard.
func (s *Service) commitAndAck(ctx context.Context, id TxnID, coord int, shards []int) error {
	replies, errs := s.each(shards, func(sh int) (core.Reply, error) {
		return s.proposeTxnOp(ctx, sh, txnOp{op: txnOpCommit, id: id})
	})
	var done []int
	var all []error
	for _, sh := range shards {
		r := replies[sh]
		switch {
		case errs[sh] != nil:
			all = append(all, errs[sh])
		case r.IsError() && r.Err.Code != CodeTxnUnknown:
			all = append(all, fmt.Errorf("raft: commit of transaction %s on shard %d answered %s", id, sh, r.Err.Msg))
		default:
			done = append(done, sh)
		}
	}
	if len(done) > 0 {
		if _, err := s.proposeTxnOp(ctx, coord, txnOp{op: txnOpAck, id: id, shards: done}); err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// RecoverTxns resolves every intent on the shards hosted here that was
// prepared more than olderThan ago (0: Config.TxnRecoverAfter), and, on
// the shards this node leads, sweeps the decision records
// (CollectDecisions); it returns how many intents it met. Writers that
// meet a stale lock resolve it by themselves; this is for the background
// loop (RecoverTxnsEvery), operators and tests.
func (s *Service) RecoverTxns(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan <= 0 {
		olderThan = s.txnRecoverAfter()
	}
	n := 0
	var errs []error
	for sh := 0; sh < s.cfg.Shards; sh++ {
		if !s.Hosts(sh) {
			continue
		}
		v, err := s.nh.StaleRead(s.ShardID(sh), txnIntentsQuery{})
		if err != nil {
			errs = append(errs, fmt.Errorf("raft: intents of shard %d: %w", sh, err))
			continue
		}
		cutoff := s.cfg.Clock().Add(-olderThan).UnixNano()
		for _, in := range v.([]IntentInfo) {
			if in.Now < cutoff {
				n++
				if err := s.ResolveTxn(ctx, sh, in); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if _, err := s.CollectDecisions(ctx, olderThan); err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// CollectDecisions sweeps the decision records of the shards this node
// leads: a commit record older than olderThan (0: Config.TxnRecoverAfter)
// whose participants have not all acknowledged it (its coordinator died
// before its acknowledgement) is committed on them (a participant that
// applied it already answers TXNUNKNOWN) and acknowledged, which drops it;
// abort records past txnDecisionTTL are dropped (one collect proposal).
// It returns how many records it acted on.
func (s *Service) CollectDecisions(ctx context.Context, olderThan time.Duration) (int, error) {
	if olderThan <= 0 {
		olderThan = s.txnRecoverAfter()
	}
	n := 0
	var errs []error
	for sh := 0; sh < s.cfg.Shards; sh++ {
		if lead, ok := s.Leader(sh); !ok || lead != s.cfg.NodeID {
			continue // one sweeper per shard: its leader
		}
		v, err := s.nh.StaleRead(s.ShardID(sh), txnDecisionsQuery{})
		if err != nil {
			errs = append(errs, fmt.Errorf("raft: decisions of shard %d: %w", sh, err))
			continue
		}
		view := v.(decisionsView)
		cutoff := s.cfg.Clock().Add(-olderThan).UnixNano()
		expired := false
		for _, d := range view.Decisions {
			switch {
			case d.Commit && !d.Legacy && d.Ref < cutoff && len(d.Left) > 0:
				n++
				if err := s.commitAndAck(ctx, d.ID, sh, d.Left); err != nil {
					errs = append(errs, err)
				}
			case !d.Commit && view.Clock > d.Ref+int64(txnDecisionTTL):
				n++
				expired = true
			}
		}
		if expired {
			if _, err := s.proposeTxnOp(ctx, sh, txnOp{op: txnOpCollect}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return n, errors.Join(errs...)
}

// Decisions lists shard sh's decision records as this node's replica has
// applied them (for tests and operators).
func (s *Service) Decisions(sh int) ([]DecisionInfo, error) {
	v, err := s.nh.StaleRead(s.ShardID(sh), txnDecisionsQuery{})
	if err != nil {
		return nil, fmt.Errorf("raft: decisions of shard %d: %w", sh, err)
	}
	return v.(decisionsView).Decisions, nil
}

// RecoverTxnsEvery resolves the stale intents of the shards hosted here
// (RecoverTxns) every period (0: Config.TxnRecoverAfter) until the Service
// closes. It bounds how long a transaction whose coordinator died after
// its decision stays half-applied to non-transactional readers, and how
// long its locks stay when no request meets them, and collects decision
// records (CollectDecisions). Run it in a goroutine of its own (nodes
// does; the simulator does in bank runs); it returns when the Service
// closes.
func (s *Service) RecoverTxnsEvery(period time.Duration) {
	if period <= 0 {
		period = s.txnRecoverAfter()
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		s.stagger(0, 1)
		ctx, cancel := context.WithTimeout(context.Background(), period)
		_, _ = s.RecoverTxns(ctx, 0) // what fails is retried at the next tick
		cancel()
	}
}

// Intents lists shard sh's prepared intents as this node's replica has
// applied them (for tests and operators).
func (s *Service) Intents(sh int) ([]IntentInfo, error) {
	v, err := s.nh.StaleRead(s.ShardID(sh), txnIntentsQuery{})
	if err != nil {
		return nil, fmt.Errorf("raft: intents of shard %d: %w", sh, err)
	}
	return v.([]IntentInfo), nil
}
