package raft

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/dialkv/dialkv/core"
)

// txnSM drives one state machine (memory or Pebble) entry by entry.
type txnSM struct {
	t      *testing.T
	update func(sm.Entry) core.Reply
	lookup func(q any) any
	index  uint64
	seq    uint64
}

func newTxnSMs(t *testing.T) map[string]func() *txnSM {
	return map[string]func() *txnSM{
		"memory": func() *txnSM {
			m, err := newMemSM(core.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			return wrapMem(t, m)
		},
		"pebble": func() *txnSM {
			m, _ := openDisk(t, pebblevfs.NewMem())
			return wrapDisk(t, m)
		},
	}
}

func wrapMem(t *testing.T, m *memSM) *txnSM {
	return &txnSM{t: t,
		update: func(e sm.Entry) core.Reply {
			r, err := m.Update(e)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := core.DecodeReply(r.Data)
			if err != nil {
				t.Fatal(err)
			}
			return rep
		},
		lookup: func(q any) any {
			v, err := m.Lookup(q)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}}
}

func wrapDisk(t *testing.T, m *diskSM) *txnSM {
	return &txnSM{t: t,
		update: func(e sm.Entry) core.Reply {
			out, err := m.Update([]sm.Entry{e})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := core.DecodeReply(out[0].Result.Data)
			if err != nil {
				t.Fatal(err)
			}
			return rep
		},
		lookup: func(q any) any {
			v, err := m.Lookup(q)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}}
}

func (m *txnSM) propose(p proposal) core.Reply {
	return m.proposeAt(p, time.Unix(1000, 0).UnixNano()+int64(m.index+1))
}

// proposeAt applies proposal p stamped now.
func (m *txnSM) proposeAt(p proposal, now int64) core.Reply {
	m.index++
	m.seq++
	p.now = now
	p.proposer, p.seq = 7, m.seq
	return m.update(sm.Entry{Index: m.index, Cmd: encodeProposal(p)})
}

func (m *txnSM) cmd(name string, args ...string) core.Reply {
	c := core.Cmd(name, args...)
	return m.propose(proposal{cmd: &c})
}

func (m *txnSM) op(o txnOp) core.Reply { return m.propose(proposal{tx: &o}) }

func (m *txnSM) get(k string) string {
	r := m.lookup(readQuery{now: time.Unix(1000, 0).UnixNano(), cmd: core.Cmd("GET", k)}).(core.Reply)
	return str(r)
}

func (m *txnSM) intents() []IntentInfo { return m.lookup(txnIntentsQuery{}).([]IntentInfo) }

func tid(n byte) TxnID { return TxnID{15: n} }

// t1000 is the clock of txnSM's proposals (propose).
var t1000 = time.Unix(1000, 0).UnixNano()

func prepare(id TxnID, coord int, conds []core.Condition, cmds ...core.Command) txnOp {
	return txnOp{op: txnOpPrepare, id: id, coord: coord, part: core.Txn{Conds: conds, Cmds: cmds}}
}

// replyStr renders a reply for comparisons: error code, or the value(s).
func replyStr(r core.Reply) string {
	switch {
	case r.IsError():
		return "ERR:" + string(r.Err.Code)
	case r.Kind == core.KindArray:
		var b bytes.Buffer
		b.WriteString("[")
		for i, e := range r.Array {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(replyStr(e))
		}
		b.WriteString("]")
		return b.String()
	}
	return str(r)
}

// TestTxnIntents: the state machine's side of two-phase commit, step by
// step, on both state machines: a prepared intent is invisible and locks
// its keys (writes and other prepares get TXNCONFLICT), a repeated prepare
// answers the same vote, commit applies the prepared commands and
// releases, a failed condition or command votes no and locks nothing,
// abort drops the intent, and the first decision recorded wins.
func TestTxnIntents(t *testing.T) {
	incr5 := core.Cmd("INCRBY", "a", "5")
	steps := []struct {
		name string
		do   func(m *txnSM) string
		want string
	}{
		{"set a", func(m *txnSM) string { return replyStr(m.cmd("SET", "a", "1")) }, "OK"},
		{"prepare T1", func(m *txnSM) string { return replyStr(m.op(prepare(tid(1), 0, nil, incr5))) }, "[6]"},
		{"intent invisible", func(m *txnSM) string { return m.get("a") }, "1"},
		{"intents listed", func(m *txnSM) string { return fmt.Sprint(len(m.intents()), m.intents()[0].ID == tid(1)) }, "1 true"},
		{"write locked key", func(m *txnSM) string { return replyStr(m.cmd("SET", "a", "2")) }, "ERR:TXNCONFLICT"},
		{"txn on locked key", func(m *txnSM) string {
			return replyStr(m.propose(proposal{txn: &core.Txn{Cmds: []core.Command{core.Cmd("SET", "b", "1"), core.Cmd("DEL", "a")}}}))
		}, "ERR:TXNCONFLICT"},
		{"nothing of it applied", func(m *txnSM) string { return m.get("b") }, "(nil)"},
		{"other key free", func(m *txnSM) string { return replyStr(m.cmd("SET", "b", "1")) }, "OK"},
		{"other prepare conflicts", func(m *txnSM) string {
			return replyStr(m.op(prepare(tid(2), 0, nil, core.Cmd("SET", "b", "2"), core.Cmd("SET", "a", "3"))))
		}, "ERR:TXNCONFLICT"},
		{"b not locked by it", func(m *txnSM) string { return replyStr(m.cmd("SET", "b", "4")) }, "OK"},
		{"prepare again", func(m *txnSM) string { return replyStr(m.op(prepare(tid(1), 0, nil, incr5))) }, "[6]"},
		{"commit T1", func(m *txnSM) string { return replyStr(m.op(txnOp{op: txnOpCommit, id: tid(1)})) }, "[6]"},
		{"committed", func(m *txnSM) string { return m.get("a") }, "6"},
		{"unlocked", func(m *txnSM) string { return replyStr(m.cmd("SET", "a", "7")) }, "OK"},
		{"commit again", func(m *txnSM) string { return replyStr(m.op(txnOp{op: txnOpCommit, id: tid(1)})) }, "ERR:TXNUNKNOWN"},
		{"failed condition votes no", func(m *txnSM) string {
			return replyStr(m.op(prepare(tid(3), 0, []core.Condition{{Key: []byte("a"), Kind: core.CondAbsent}}, core.Cmd("SET", "a", "x"))))
		}, "ERR:CONDFAILED"},
		{"failed command votes no", func(m *txnSM) string {
			return replyStr(m.op(prepare(tid(4), 0, nil, core.Cmd("SET", "s", "x"), core.Cmd("INCR", "s"))))
		}, "ERR:ERR"},
		{"no vote locks nothing", func(m *txnSM) string { return fmt.Sprintf("%d %s", len(m.intents()), replyStr(m.cmd("SET", "a", "8"))) }, "0 OK"},
		{"prepare T5", func(m *txnSM) string { return replyStr(m.op(prepare(tid(5), 0, nil, core.Cmd("SET", "a", "9")))) }, "[OK]"},
		{"abort T5", func(m *txnSM) string { return replyStr(m.op(txnOp{op: txnOpAbort, id: tid(5)})) }, "OK"},
		{"aborted: unchanged, unlocked", func(m *txnSM) string { return fmt.Sprintf("%s %d", m.get("a"), len(m.intents())) }, "8 0"},
		{"abort unknown", func(m *txnSM) string { return replyStr(m.op(txnOp{op: txnOpAbort, id: tid(5)})) }, "OK"},
		{"decide commit first", func(m *txnSM) string {
			return replyStr(m.op(txnOp{op: txnOpDecide, id: tid(6), decision: decisionCommit, ref: t1000}))
		}, "1"},
		{"abort after commit loses", func(m *txnSM) string {
			return replyStr(m.op(txnOp{op: txnOpDecide, id: tid(6), decision: decisionAbort, ref: t1000}))
		}, "1"},
		{"decide abort first", func(m *txnSM) string {
			return replyStr(m.op(txnOp{op: txnOpDecide, id: tid(7), decision: decisionAbort, ref: t1000}))
		}, "0"},
		{"commit after abort loses", func(m *txnSM) string {
			return replyStr(m.op(txnOp{op: txnOpDecide, id: tid(7), decision: decisionCommit, ref: t1000}))
		}, "0"},
	}
	for name, mk := range newTxnSMs(t) {
		t.Run(name, func(t *testing.T) {
			m := mk()
			for i, s := range steps {
				if got := s.do(m); got != s.want {
					t.Fatalf("step %d (%s) = %q, want %q (go test -run 'TestTxnIntents/%s' ./consistency/raft)", i, s.name, got, s.want, name)
				}
			}
		})
	}
}

// TestTxnTableSurvivesSnapshotAndReopen: an intent, its locks and a
// decision are carried by a snapshot (memory) and by the Pebble state
// machine across a reopen; the intent then commits.
func TestTxnTableSurvivesSnapshotAndReopen(t *testing.T) {
	check := func(t *testing.T, m *txnSM) {
		t.Helper()
		if got := replyStr(m.cmd("SET", "a", "2")); got != "ERR:TXNCONFLICT" {
			t.Fatalf("write of a locked key after restore = %s, want TXNCONFLICT", got)
		}
		if got := replyStr(m.op(txnOp{op: txnOpDecide, id: tid(2), decision: decisionAbort, ref: t1000})); got != "1" {
			t.Fatalf("decision after restore = %s, want the recorded commit (1)", got)
		}
		if got := replyStr(m.op(txnOp{op: txnOpCommit, id: tid(1)})); got != "[OK]" {
			t.Fatalf("commit after restore = %s", got)
		}
		if got := m.get("a"); got != "x" {
			t.Fatalf("a = %s after commit, want x", got)
		}
	}
	setup := func(m *txnSM) {
		m.cmd("SET", "a", "1")
		m.op(prepare(tid(1), 3, nil, core.Cmd("SET", "a", "x")))
		m.op(txnOp{op: txnOpDecide, id: tid(2), decision: decisionCommit, ref: t1000})
	}
	t.Run("memory-snapshot", func(t *testing.T) {
		a, _ := newMemSM(core.Limits{})
		ma := wrapMem(t, a)
		setup(ma)
		var snap bytes.Buffer
		if err := a.SaveSnapshot(&snap, nil, nil); err != nil {
			t.Fatal(err)
		}
		b, _ := newMemSM(core.Limits{})
		// b holds an intent of its own that the snapshot must replace.
		mb := wrapMem(t, b)
		mb.op(prepare(tid(9), 0, nil, core.Cmd("SET", "z", "1")))
		if err := b.RecoverFromSnapshot(bytes.NewReader(snap.Bytes()), nil, nil); err != nil {
			t.Fatal(err)
		}
		mb.index, mb.seq = ma.index, ma.seq
		if in := mb.intents(); len(in) != 1 || in[0].ID != tid(1) || in[0].Coord != 3 {
			t.Fatalf("intents after restore = %v, want only T1 (coordinator 3)", in)
		}
		check(t, mb)
	})
	t.Run("pebble-reopen", func(t *testing.T) {
		fs := pebblevfs.NewMem()
		d, _ := openDisk(t, fs)
		md := wrapDisk(t, d)
		setup(md)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		d2, idx := openDisk(t, fs)
		defer d2.Close()
		if idx != md.index {
			t.Fatalf("reopened at %d, want %d", idx, md.index)
		}
		m2 := wrapDisk(t, d2)
		m2.index, m2.seq = idx, md.seq
		if in := m2.intents(); len(in) != 1 || in[0].ID != tid(1) {
			t.Fatalf("intents after reopen = %v", in)
		}
		check(t, m2)
	})
}

// TestTxnRecoveryBothWays: an orphaned intent on a participant is
// resolved by asking the coordinator shard: with no decision recorded the
// recovery's abort is recorded and the intent dropped; with a commit
// recorded first, the recovery learns it and commits the intent.
func TestTxnRecoveryBothWays(t *testing.T) {
	for _, tc := range []struct {
		name     string
		recorded byte // decision recorded before recovery (0: none)
		want     string
	}{
		{"undecided-aborts", 0, "1"},
		{"committed-commits", decisionCommit, "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			coordSM, _ := newMemSM(core.Limits{})
			partSM, _ := newMemSM(core.Limits{})
			coord, part := wrapMem(t, coordSM), wrapMem(t, partSM)
			part.cmd("SET", "k", "1")
			part.op(prepare(tid(1), 0, nil, core.Cmd("SET", "k", "2")))
			if tc.recorded != 0 {
				coord.op(txnOp{op: txnOpDecide, id: tid(1), decision: tc.recorded, ref: t1000})
			}
			// Recovery: propose abort to the coordinator shard, apply
			// its answer on the participant (Service.ResolveTxn).
			in := part.intents()
			if len(in) != 1 {
				t.Fatalf("intents = %v", in)
			}
			d := coord.op(txnOp{op: txnOpDecide, id: in[0].ID, decision: decisionAbort, ref: t1000})
			op := byte(txnOpAbort)
			if d.Int == 1 {
				op = txnOpCommit
			}
			part.op(txnOp{op: op, id: in[0].ID})
			if got := part.get("k"); got != tc.want || len(part.intents()) != 0 {
				t.Fatalf("k = %s with %d intents after recovery, want %s and none", got, len(part.intents()), tc.want)
			}
			// The coordinator's own late commit decision loses to the
			// recovery's abort (and a recorded commit stays).
			late := coord.op(txnOp{op: txnOpDecide, id: tid(1), decision: decisionCommit, ref: t1000})
			if want := map[bool]int64{true: 1, false: 0}[tc.recorded == decisionCommit]; late.Int != want {
				t.Fatalf("late decision = %d, want %d", late.Int, want)
			}
		})
	}
}

// TestTxnOpCodec: every operation round-trips; malformed bodies are
// refused.
func TestTxnOpCodec(t *testing.T) {
	ops := []txnOp{
		prepare(tid(1), 5, []core.Condition{{Key: []byte("k"), Kind: core.CondVersion, Version: 3}}, core.Cmd("SET", "k", "v")),
		{op: txnOpCommit, id: tid(2)},
		{op: txnOpAbort, id: tid(3)},
		{op: txnOpDecide, id: tid(4), decision: decisionCommit, ref: t1000},
		{op: txnOpDecide, id: tid(5), decision: decisionCommit, ref: -7, shards: []int{0, 3, 9}},
		{op: txnOpDecide, id: tid(6), decision: decisionAbort, legacy: true},
		{op: txnOpAck, id: tid(7), shards: []int{2, 1}},
		{op: txnOpCollect},
	}
	for _, o := range ops {
		p, err := decodeProposal(encodeProposal(proposal{now: 1, proposer: 2, seq: 3, tx: &o}))
		if err != nil || p.tx == nil || p.tx.op != o.op || p.tx.id != o.id || p.tx.coord != o.coord || p.tx.decision != o.decision ||
			len(p.tx.part.Cmds) != len(o.part.Cmds) || p.tx.ref != o.ref || !slices.Equal(p.tx.shards, o.shards) || p.tx.legacy != o.legacy {
			t.Fatalf("round trip of %+v = %+v, %v", o, p.tx, err)
		}
	}
	for _, bad := range [][]byte{{}, {txnOpCommit}, append([]byte{9}, make([]byte, 16)...),
		append(append([]byte{txnOpDecide}, make([]byte, 16)...), 'x'), append(append([]byte{txnOpCommit}, make([]byte, 16)...), 1)} {
		if _, err := decodeTxnOp(bad); err == nil {
			t.Fatalf("decodeTxnOp(%x) accepted", bad)
		}
	}
}
