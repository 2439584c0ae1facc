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

// TestRefusedSnapshotKeepsPeerReachable: three NodeHosts over this
// transport; replica 3 stops, the others commit and compact past it, it
// restarts and is sent a snapshot of five chunks whose first chunk it
// refuses once. The refused stream must not fail on the sender (a failed
// stream is a breaker.Fail in Dragonboat's transport, reported as
// ConnectionFailed, after which Dragonboat drops every message to that
// address for 500 ms ± 50%), and replica 3 must still catch up from a
// second snapshot.
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
	addrs := map[uint64]string{}
	for i := uint64(1); i <= 3; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		ln.Close()
	}
	ev := &events{}
	var recv *refusing
	nhs := map[uint64]*dragonboat.NodeHost{}
	rc := func(id uint64) config.Config {
		return config.Config{ShardID: 1, ReplicaID: id, ElectionRTT: 20, HeartbeatRTT: 2,
			CheckQuorum: true, PreVote: true, SnapshotEntries: 10, CompactionOverhead: 2}
	}
	newSM := func(uint64, uint64) sm.IStateMachine { return &bigSM{} }
	for i := uint64(1); i <= 3; i++ {
		n := fmt.Sprintf("n%d", i)
		srv, cli, err := security.RaftConfigs(security.TLSFiles{
			Cert: filepath.Join(dir, "certs", "node-"+n+".crt"),
			Key:  filepath.Join(dir, "certs", "node-"+n+".key"),
			CA:   filepath.Join(dir, "certs", "ca.crt")}, isNode, nil)
		if err != nil {
			t.Fatal(err)
		}
		var tf config.TransportFactory = Factory{Server: srv, Client: cli}
		if i == 3 {
			recv = &refusing{Factory: Factory{Server: srv, Client: cli}}
			tf = recv
		}
		nh, err := dragonboat.NewNodeHost(config.NodeHostConfig{
			NodeHostDir: filepath.Join(dir, n), RTTMillisecond: 10, RaftAddress: addrs[i],
			SystemEventListener: ev, Expert: config.ExpertConfig{TransportFactory: tf}})
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
	var caughtUp time.Time
	for {
		v, err := nhs[3].StaleRead(1, nil)
		if err == nil && v.(uint64) >= 41 {
			caughtUp = time.Now()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("replica 3 did not catch up (at %v, %v)", v, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	recv.mu.Lock()
	refused := recv.refused
	recv.mu.Unlock()
	if refused.IsZero() {
		t.Fatal("no snapshot chunk reached replica 3: the test did not test anything")
	}
	longest, began := recv.silence(caughtUp)
	t.Logf("replica 3 caught up %v after its refusal; longest silence from the leader after it: %v, from %v after it",
		caughtUp.Sub(refused).Round(time.Millisecond), longest.Round(time.Millisecond), began.Round(time.Millisecond))
	ev.mu.Lock()
	defer ev.mu.Unlock()
	for _, f := range ev.failed {
		// Before the refusal, replica 3's NodeHost may not have been
		// listening yet when the others first dialled it.
		if f.Address == addrs[3] && !f.at.Before(refused) {
			t.Errorf("Dragonboat reported a failed connection to replica 3 (snapshot connection %v): its breaker dropped every message to it for 250-750 ms", f.SnapshotConnection)
		}
	}
}
