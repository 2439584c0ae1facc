package raftls

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/dialkv/dialkv/nodes/security"
)

// bigSM is a counter whose snapshots carry padding of snapPad bytes, so a
// snapshot is several 2 MiB chunks.
type bigSM struct{ n uint64 }

const snapPad = 9 << 20 // five chunks

func (s *bigSM) Update(e sm.Entry) (sm.Result, error) { s.n++; return sm.Result{Value: s.n}, nil }
func (s *bigSM) Lookup(any) (any, error)              { return s.n, nil }
func (s *bigSM) SaveSnapshot(w io.Writer, _ sm.ISnapshotFileCollection, _ <-chan struct{}) error {
	if err := binary.Write(w, binary.BigEndian, s.n); err != nil {
		return err
	}
	_, err := w.Write(make([]byte, snapPad))
	return err
}
func (s *bigSM) RecoverFromSnapshot(r io.Reader, _ []sm.SnapshotFile, _ <-chan struct{}) error {
	if err := binary.Read(r, binary.BigEndian, &s.n); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, r)
	return err
}
func (s *bigSM) Close() error { return nil }

// events records Dragonboat's connection failures (each one is a
// breaker.Fail in its transport) and nothing else.
type events struct {
	mu     sync.Mutex
	failed []failure
}

type failure struct {
	raftio.ConnectionInfo
	at time.Time
}

func (e *events) ConnectionFailed(i raftio.ConnectionInfo) {
	e.mu.Lock()
	e.failed = append(e.failed, failure{i, time.Now()})
	e.mu.Unlock()
}
func (*events) NodeHostShuttingDown()                       {}
func (*events) NodeUnloaded(raftio.NodeInfo)                {}
func (*events) NodeDeleted(raftio.NodeInfo)                 {}
func (*events) NodeReady(raftio.NodeInfo)                   {}
func (*events) MembershipChanged(raftio.NodeInfo)           {}
func (*events) ConnectionEstablished(raftio.ConnectionInfo) {}
func (*events) SendSnapshotStarted(raftio.SnapshotInfo)     {}
func (*events) SendSnapshotCompleted(raftio.SnapshotInfo)   {}
func (*events) SendSnapshotAborted(raftio.SnapshotInfo)     {}
func (*events) SnapshotReceived(raftio.SnapshotInfo)        {}
func (*events) SnapshotRecovered(raftio.SnapshotInfo)       {}
func (*events) SnapshotCreated(raftio.SnapshotInfo)         {}
func (*events) SnapshotCompacted(raftio.SnapshotInfo)       {}
func (*events) LogCompacted(raftio.EntryInfo)               {}
func (*events) LogDBCompacted(raftio.EntryInfo)             {}

// refusing wraps a Factory: the receiving NodeHost refuses the first
// snapshot chunk it is handed (as Dragonboat's chunk tracker refuses one
// that is out of order, untracked, beyond its slots or of a removed
// replica), once, and records when each message batch arrived.
type refusing struct {
	Factory
	mu      sync.Mutex
	refused time.Time   // when the chunk was refused (zero: not yet)
	batches []time.Time // arrival of every batch with a request
	chunks  int         // chunks handed to Dragonboat
}

func (r *refusing) Create(nhc config.NodeHostConfig, mh raftio.MessageHandler, ch raftio.ChunkHandler) raftio.ITransport {
	return r.Factory.Create(nhc, func(b pb.MessageBatch) {
		if len(b.Requests) > 0 {
			r.mu.Lock()
			r.batches = append(r.batches, time.Now())
			r.mu.Unlock()
		}
		mh(b)
	}, func(c pb.Chunk) bool {
		r.mu.Lock()
		if r.refused.IsZero() {
			r.refused = time.Now()
			r.mu.Unlock()
			return false
		}
		r.chunks++
		r.mu.Unlock()
		return ch(c)
	})
}

// silence is the longest time after the refusal without a message batch
// arriving, up to the first batch after until, and when it began (after
// the refusal).
func (r *refusing) silence(until time.Time) (longest, began time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	last := r.refused
	for _, at := range r.batches {
		if at.Before(r.refused) {
			continue
		}
		if d := at.Sub(last); d > longest {
			longest, began = d, last.Sub(r.refused)
		}
		last = at
		if at.After(until) {
			break
		}
	}
	return longest, began
}

// catchUpFromSnapshot runs three NodeHosts, replica i over tfs[i-1] (nil:
// Dragonboat's TCP transport): replica 3 stops, the others commit and
// compact past it, it restarts, and it must catch up from a snapshot of
// five chunks. It returns when replica 3 caught up. ev records every
// NodeHost's connection failures; addrs are the Raft addresses.
func catchUpFromSnapshot(t *testing.T, tfs [3]config.TransportFactory, ev *events) (caughtUp time.Time, addrs map[uint64]string) {
	t.Helper()
	dir := t.TempDir()
	addrs = map[uint64]string{}
	for i := uint64(1); i <= 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	nhs := map[uint64]*dragonboat.NodeHost{}
	rc := func(id uint64) config.Config {
		return config.Config{ShardID: 1, ReplicaID: id, ElectionRTT: 20, HeartbeatRTT: 2,
			CheckQuorum: true, PreVote: true, SnapshotEntries: 10, CompactionOverhead: 2}
	}
	newSM := func(uint64, uint64) sm.IStateMachine { return &bigSM{} }
	for i := uint64(1); i <= 3; i++ {
		nh, err := dragonboat.NewNodeHost(config.NodeHostConfig{
			NodeHostDir: filepath.Join(dir, fmt.Sprintf("n%d", i)), RTTMillisecond: 10, RaftAddress: addrs[i],
			SystemEventListener: ev, Expert: config.ExpertConfig{TransportFactory: tfs[i-1]}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nh.Close)
		nhs[i] = nh
		if err := nh.StartReplica(addrs, false, newSM, rc(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	propose := func(nh *dragonboat.NodeHost) {
		for {
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := nh.SyncPropose(pctx, nh.GetNoOPSession(1), []byte("x"))
			pcancel()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("propose: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	propose(nhs[1])
	if err := nhs[3].StopReplica(1, 3); err != nil {
		t.Fatal(err)
	}
	for range 40 {
		propose(nhs[1])
	}
	// Replica 1 has compacted its log past replica 3's (SnapshotEntries 10,
	// CompactionOverhead 2): replica 3 can only catch up from a snapshot.
	if err := nhs[3].StartReplica(addrs, false, newSM, rc(3)); err != nil {
		t.Fatal(err)
	}
	for {
		v, err := nhs[3].StaleRead(1, nil)
		if err == nil && v.(uint64) >= 41 {
			return time.Now(), addrs
		}
		if ctx.Err() != nil {
			t.Fatalf("replica 3 did not catch up (at %v, %v)", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failedAfter returns the connection failures Dragonboat reported for addr
// at or after since (before it, replica 3's NodeHost may not have been
// listening yet when the others first dialled it).
// failedWithin polls failedAfter for up to wait, returning as soon as a
// failure is there: Dragonboat hands ConnectionFailed to the listener from
// its own event goroutine, so on a loaded machine the report comes after
// the replica caught up (checking at once missed it: a false "no failure"
// in the Dragonboat TCP control case, and a failure missed where none is
// wanted).
func (e *events) failedWithin(addr string, since time.Time, wait time.Duration) []failure {
	for deadline := time.Now().Add(wait); ; time.Sleep(20 * time.Millisecond) {
		if f := e.failedAfter(addr, since); len(f) > 0 || time.Now().After(deadline) {
			return f
		}
	}
}

func (e *events) failedAfter(addr string, since time.Time) []failure {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []failure
	for _, f := range e.failed {
		if f.Address == addr && !f.at.Before(since) {
			out = append(out, f)
		}
	}
	return out
}

// TestRefusedSnapshotKeepsPeerReachable: three NodeHosts over this
// transport, in TLS and in plain mode; replica 3 is sent a snapshot of
// five chunks (catchUpFromSnapshot) whose first chunk it refuses once. The
// refused stream must not fail on the sender (a failed stream is a
// breaker.Fail in Dragonboat's transport, reported as ConnectionFailed,
// after which Dragonboat drops every message to that address for 500 ms ±
// 50%), and replica 3 must still catch up from a second snapshot.
//
// Reproduce: go test -count=1 -run TestRefusedSnapshotKeepsPeerReachable -v ./transport/raftls/
func TestRefusedSnapshotKeepsPeerReachable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NodeHosts")
	}
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", filepath.Join(dir, "certs"), "--nodes", "n1,n2,n3"}, &out, &errb); code != 0 {
		t.Fatalf("certs: %s", errb.String())
	}
	isNode := func(s string) bool { return s == "n1" || s == "n2" || s == "n3" }
	tlsFactory := func(i int) Factory {
		n := fmt.Sprintf("n%d", i)
		srv, cli, err := security.RaftConfigs(security.TLSFiles{
			Cert: filepath.Join(dir, "certs", "node-"+n+".crt"),
			Key:  filepath.Join(dir, "certs", "node-"+n+".key"),
			CA:   filepath.Join(dir, "certs", "ca.crt")}, isNode, nil)
		if err != nil {
			t.Fatal(err)
		}
		return Factory{Server: srv, Client: cli}
	}
	plainFactory := func(int) Factory { return Factory{} }
	for _, mode := range []struct {
		name    string
		factory func(i int) Factory
	}{{"tls", tlsFactory}, {"plain", plainFactory}} {
		t.Run(mode.name, func(t *testing.T) {
			recv := &refusing{Factory: mode.factory(3)}
			ev := &events{}
			caughtUp, addrs := catchUpFromSnapshot(t, [3]config.TransportFactory{mode.factory(1), mode.factory(2), recv}, ev)
			recv.mu.Lock()
			refused := recv.refused
			recv.mu.Unlock()
			if refused.IsZero() {
				t.Fatal("no snapshot chunk reached replica 3: the test did not test anything")
			}
			longest, began := recv.silence(caughtUp)
			t.Logf("replica 3 caught up %v after its refusal; longest silence from the leader after it: %v, from %v after it",
				caughtUp.Sub(refused).Round(time.Millisecond), longest.Round(time.Millisecond), began.Round(time.Millisecond))
			for _, f := range ev.failedWithin(addrs[3], refused, time.Second) {
				t.Errorf("Dragonboat reported a failed connection to replica 3 (snapshot connection %v): its breaker dropped every message to it for 250-750 ms", f.SnapshotConnection)
			}
		})
	}
}

// corrupting wraps a Factory: the first snapshot chunk its transports
// send (once for all that share first) carries a transport binary version
// no receiver knows, so the receiving NodeHost's own chunk tracker
// (Dragonboat's, whatever the transport) refuses it.
type corrupting struct {
	Factory
	first *onceAt
}

// onceAt records the first take.
type onceAt struct {
	mu sync.Mutex
	at time.Time
}

func (o *onceAt) take() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.at.IsZero() {
		return false
	}
	o.at = time.Now()
	return true
}

func (o *onceAt) when() time.Time { o.mu.Lock(); defer o.mu.Unlock(); return o.at }

func (c corrupting) Create(nhc config.NodeHostConfig, mh raftio.MessageHandler, ch raftio.ChunkHandler) raftio.ITransport {
	return corruptingTransport{ITransport: c.Factory.Create(nhc, mh, ch), first: c.first}
}

type corruptingTransport struct {
	raftio.ITransport
	first *onceAt
}

func (t corruptingTransport) GetSnapshotConnection(ctx context.Context, target string) (raftio.ISnapshotConnection, error) {
	sc, err := t.ITransport.GetSnapshotConnection(ctx, target)
	if err != nil {
		return nil, err
	}
	return corruptingConn{ISnapshotConnection: sc, first: t.first}, nil
}

type corruptingConn struct {
	raftio.ISnapshotConnection
	first *onceAt
}

func (c corruptingConn) SendChunk(ch pb.Chunk) error {
	if ch.ChunkId == 0 && c.first.take() {
		ch.BinVer++
	}
	return c.ISnapshotConnection.SendChunk(ch)
}

// TestRefusedSnapshotOverTCP: replicas 1 and 2 run this transport in plain
// mode and corrupt the first chunk they send, so replica 3's own chunk
// tracker refuses it. Replica 3 runs this transport in plain mode, or
// Dragonboat's TCP transport (as a node of an older build does: replicas
// 1 and 2 then speak Dragonboat's format to it, and it to them). With
// plain mode the refused stream stays open and Dragonboat reports no
// failed connection; with Dragonboat's TCP transport the receiver closes
// the stream at the refused chunk, the sender's next chunk fails, and
// Dragonboat reports a failed connection to replica 3, tripping the
// breaker that silences it for 250-750 ms: the case pins the behaviour
// plain mode replaces (if it stops failing, Dragonboat changed: revisit
// docs/raft.md). In both, replica 3 catches up.
//
// Reproduce: go test -count=1 -run TestRefusedSnapshotOverTCP -v ./transport/raftls/
func TestRefusedSnapshotOverTCP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NodeHosts")
	}
	for _, tc := range []struct {
		name        string
		receiver    config.TransportFactory
		wantFailure bool
	}{
		{"raftls plain", Factory{}, false},
		{"dragonboat tcp", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := &onceAt{}
			ev := &events{}
			sender := corrupting{first: first}
			caughtUp, addrs := catchUpFromSnapshot(t, [3]config.TransportFactory{sender, sender, tc.receiver}, ev)
			refused := first.when()
			if refused.IsZero() {
				t.Fatal("no snapshot chunk was sent to replica 3: the test did not test anything")
			}
			wait := time.Second // time for a late report to arrive
			if tc.wantFailure {
				wait = 10 * time.Second
			}
			failed := ev.failedWithin(addrs[3], refused, wait)
			t.Logf("replica 3 caught up %v after the refused chunk was sent; %d failed connections to it reported after",
				caughtUp.Sub(refused).Round(time.Millisecond), len(failed))
			if got := len(failed) > 0; got != tc.wantFailure {
				t.Errorf("failed connection to replica 3 reported: %v, want %v", got, tc.wantFailure)
			}
		})
	}
}
