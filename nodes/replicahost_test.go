package nodes

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/core"
)

// hostNet connects ReplicaHosts in memory; cut drops every message.
type hostNet struct {
	mu    sync.Mutex
	hosts map[consistency.NodeID]*ReplicaHost
	cut   atomic.Bool
}

func (n *hostNet) send(m consistency.Message) {
	if n.cut.Load() {
		return
	}
	n.mu.Lock()
	h := n.hosts[m.To]
	n.mu.Unlock()
	if h != nil {
		h.Deliver(m)
	}
}

func startCausalHosts(t *testing.T, params map[string]string) *hostNet {
	t.Helper()
	peers := []consistency.NodeID{"n1", "n2", "n3"}
	net := &hostNet{hosts: map[consistency.NodeID]*ReplicaHost{}}
	for i, id := range peers {
		eng := core.NewMemEngine()
		rep, err := causal.New(consistency.Config{ID: id, Peers: peers, Engine: eng, Rand: rand.New(rand.NewPCG(uint64(i), 1)), Params: params})
		if err != nil {
			t.Fatal(err)
		}
		h := NewReplicaHost(rep, eng, net.send, HostOptions{Tick: 5 * time.Millisecond})
		net.mu.Lock()
		net.hosts[id] = h
		net.mu.Unlock()
		t.Cleanup(func() { h.Close() })
	}
	return net
}

func do(t *testing.T, h *ReplicaHost, tok []byte, name string, args ...string) (consistency.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := core.Cmd(name, args...)
	return h.Do(ctx, consistency.Request{Cmd: &cmd, Token: tok})
}

func TestReplicaHostRunsASansIOStrategyOnTheWallClock(t *testing.T) {
	net := startCausalHosts(t, map[string]string{"regions": "a:n1;b:n2,n3"})
	w, err := do(t, net.hosts["n1"], nil, "SET", "k", "v1")
	if err != nil || string(w.Reply.Str) != "OK" {
		t.Fatalf("SET: %+v %v", w.Reply, err)
	}
	// Another region, with the session token: must see the write.
	for _, id := range []consistency.NodeID{"n2", "n3"} {
		r, err := do(t, net.hosts[id], w.Token, "GET", "k")
		if err != nil || string(r.Reply.Str) != "v1" {
			t.Fatalf("GET at %s with the token: %+v %v, want v1", id, r.Reply, err)
		}
	}
}

func TestReplicaHostMapsUnavailableAndHonoursDeadlines(t *testing.T) {
	net := startCausalHosts(t, map[string]string{"regions": "a:n1;b:n2,n3", "timeout": "200ms"})
	net.cut.Store(true)
	w, err := do(t, net.hosts["n1"], nil, "SET", "k", "v1")
	if err != nil {
		t.Fatalf("SET while cut off (local acknowledgement): %v", err)
	}
	if _, err := do(t, net.hosts["n2"], w.Token, "GET", "k"); !errors.Is(err, consistency.ErrUnavailable) {
		t.Fatalf("GET elsewhere with the token while cut off: err %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	cmd := core.Cmd("GET", "k")
	if _, err := net.hosts["n2"].Do(ctx, consistency.Request{Cmd: &cmd, Token: w.Token}); !errors.Is(err, consistency.ErrTimeout) {
		t.Fatalf("GET with a 50ms deadline: err %v, want ErrTimeout", err)
	}
}

// failingEngine fails Sync: nothing the replica produced may be sent.
type failingEngine struct{ *core.MemEngine }

func (failingEngine) Sync() error { return errors.New("disk on fire") }

func TestReplicaHostSendsNothingWhenSyncFails(t *testing.T) {
	peers := []consistency.NodeID{"n1", "n2"}
	eng := failingEngine{core.NewMemEngine()}
	rep, err := causal.New(consistency.Config{ID: "n1", Peers: peers, Engine: eng, Rand: rand.New(rand.NewPCG(1, 1)), Params: map[string]string{"regions": "a:n1;b:n2"}})
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	h := NewReplicaHost(rep, eng, func(consistency.Message) { sent.Add(1) }, HostOptions{})
	defer h.Close()
	r, err := do(t, h, nil, "SET", "k", "v")
	if err != nil || !r.Reply.IsError() {
		t.Fatalf("SET with a failing sync: %+v %v, want an error reply", r.Reply, err)
	}
	if n := sent.Load(); n != 0 {
		t.Fatalf("%d messages left the node although its state was not durable", n)
	}
}

// heldReplica records the requests it gets and answers them all at the
// next Tick (or never, if mute); its reply token is "t"+value of the SET.
type heldReplica struct {
	mu       sync.Mutex
	mute     bool
	got      []consistency.Request
	waiting  []consistency.Request
	answered int
	out      consistency.Ready
}

func (r *heldReplica) Request(_ time.Time, req consistency.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, req)
	r.waiting = append(r.waiting, req)
}
func (r *heldReplica) Receive(time.Time, consistency.Message) {}
func (r *heldReplica) Tick(time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mute {
		return
	}
	for _, req := range r.waiting {
		val := string(req.Cmd.Args[len(req.Cmd.Args)-1])
		r.out.Responses = append(r.out.Responses, consistency.Response{ID: req.ID, Reply: core.OK(), Token: []byte("t" + val)})
		r.answered++
	}
	r.waiting = nil
}
func (r *heldReplica) Ready() consistency.Ready {
	r.mu.Lock()
	defer r.mu.Unlock()
	rd := r.out
	r.out = consistency.Ready{}
	return rd
}
func (r *heldReplica) Dump(time.Time) (map[string]string, error) { return nil, nil }

var _ consistency.Replica = (*heldReplica)(nil)

func setReqs(kvs ...string) []consistency.Request {
	var out []consistency.Request
	for i := 0; i < len(kvs); i += 2 {
		c := core.Cmd("SET", kvs[i], kvs[i+1])
		out = append(out, consistency.Request{Cmd: &c, Token: []byte("client")})
	}
	return out
}

func TestReplicaHostDoBatchChains(t *testing.T) {
	// a1, b1, c1 start together (one tick answers them all); a2 and a3
	// follow a1 one tick apart, each with the previous token on key a.
	tests := []struct {
		name  string
		keyed bool
		// want: for each request (in arrival order at the replica), its
		// value and the token it carried.
		want []string
	}{
		{"keyed", true, []string{"a1:client", "b1:client", "c1:client", "a2:ta1", "a3:ta2"}},
		{"one chain", false, []string{"a1:client", "b1:ta1", "a2:tb1", "c1:ta2", "a3:tc1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := &heldReplica{}
			h := NewReplicaHost(rep, core.NewMemEngine(), func(consistency.Message) {}, HostOptions{Tick: 2 * time.Millisecond, KeyedBatches: tc.keyed})
			defer h.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resps, err := h.DoBatch(ctx, setReqs("a", "a1", "b", "b1", "a", "a2", "c", "c1", "a", "a3"))
			if err != nil {
				t.Fatal(err)
			}
			wantTok := []string{"ta1", "tb1", "ta2", "tc1", "ta3"}
			for i, r := range resps {
				if string(r.Token) != wantTok[i] {
					t.Errorf("response %d: token %q, want %q (responses out of order)", i, r.Token, wantTok[i])
				}
			}
			rep.mu.Lock()
			defer rep.mu.Unlock()
			var got []string
			for _, r := range rep.got {
				got = append(got, string(r.Cmd.Args[1])+":"+string(r.Token))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("requests reached the replica as %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReplicaHostDoBatchDeadline(t *testing.T) {
	rep := &heldReplica{mute: true}
	h := NewReplicaHost(rep, core.NewMemEngine(), func(consistency.Message) {}, HostOptions{KeyedBatches: true})
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	resps, err := h.DoBatch(ctx, setReqs("a", "1", "b", "2", "a", "3"))
	if err != nil {
		t.Fatal(err)
	}
	want := []core.Code{consistency.CodeTimeout, consistency.CodeTimeout, consistency.CodeUnavailable}
	for i, r := range resps {
		if !r.Reply.IsError() || r.Reply.Err.Code != want[i] {
			t.Errorf("response %d: %+v, want a %s error", i, r.Reply, want[i])
		}
	}
	// The host still serves after abandoning the batch.
	rep.mu.Lock()
	rep.mute = false
	rep.mu.Unlock()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if r, err := h.Do(ctx2, setReqs("c", "4")[0]); err != nil || string(r.Token) != "t4" {
		t.Fatalf("Do after an abandoned batch: %+v %v", r, err)
	}
}

func startQuorumHosts(t *testing.T, params map[string]string) *hostNet {
	t.Helper()
	peers := []consistency.NodeID{"n1", "n2", "n3"}
	net := &hostNet{hosts: map[consistency.NodeID]*ReplicaHost{}}
	for i, id := range peers {
		eng := core.NewMemEngine()
		rep, err := quorum.New(consistency.Config{ID: id, Peers: peers, Engine: eng, Rand: rand.New(rand.NewPCG(uint64(i), 2)), Params: params})
		if err != nil {
			t.Fatal(err)
		}
		h := NewReplicaHost(rep, eng, net.send, HostOptions{Tick: 5 * time.Millisecond, KeyedBatches: true})
		net.mu.Lock()
		net.hosts[id] = h
		net.mu.Unlock()
		t.Cleanup(func() { h.Close() })
	}
	return net
}

func TestReplicaHostDoBatchOnQuorum(t *testing.T) {
	net := startQuorumHosts(t, map[string]string{"n": "3", "r": "2", "w": "2"})
	var reqs []consistency.Request
	for i := range 200 {
		c := core.Cmd("SET", fmt.Sprintf("k%d", i%50), fmt.Sprintf("v%d", i))
		reqs = append(reqs, consistency.Request{Cmd: &c})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resps, err := net.hosts["n1"].DoBatch(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resps {
		if r.Reply.IsError() {
			t.Fatalf("SET %d: %+v", i, r.Reply)
		}
	}
	// Per-key order and token chaining: each key holds exactly its last
	// value (the chained writes superseded each other: no siblings).
	for k := range 50 {
		r, err := do(t, net.hosts["n3"], nil, "GET", fmt.Sprintf("k%d", k))
		want := fmt.Sprintf("v%d", 150+k)
		if err != nil || string(r.Reply.Str) != want || len(r.Values) > 1 {
			t.Fatalf("GET k%d at n3: %q siblings %q err %v, want only %q", k, r.Reply.Str, r.Values, err, want)
		}
	}
}

// TestReplicaHostCancelBeforeStart is the regression test of the "index out
// of range [0] with length 0" handler panic seen under load on quorum nodes:
// a job whose deadline passes while it waits in the request queue (the loop
// busy) is sent to the cancel queue too, and the loop's select may take the
// cancel first. The host answered nil then (Do indexed it and panicked) and
// later started the job anyway. Now every request gets the not-started
// reply and the replica never sees it. Which queue the loop takes first is
// random, so the test runs the race several times and checks it was hit.
func TestReplicaHostCancelBeforeStart(t *testing.T) {
	rep := &heldReplica{mute: true}
	h := NewReplicaHost(rep, core.NewMemEngine(), func(consistency.Message) {}, HostOptions{KeyedBatches: true})
	defer h.Close()
	cancelFirst := 0
	for iter := range 40 {
		entered, release := make(chan struct{}), make(chan struct{})
		go h.Call(func(consistency.Replica) { close(entered); <-release })
		<-entered // the loop is busy
		val := fmt.Sprint("v", iter)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		type result struct {
			rs  []consistency.Response
			err error
		}
		done := make(chan result, 1)
		go func() {
			rs, err := h.DoBatch(ctx, setReqs("k", val))
			done <- result{rs, err}
		}()
		time.Sleep(30 * time.Millisecond) // queued, deadline passed, cancel queued
		close(release)
		res := <-done
		cancel()
		if res.err != nil {
			t.Fatalf("iteration %d: DoBatch: %v", iter, res.err)
		}
		if len(res.rs) != 1 {
			t.Fatalf("iteration %d: %d responses to 1 request", iter, len(res.rs))
		}
		r := res.rs[0].Reply
		if !r.IsError() {
			t.Fatalf("iteration %d: %+v, want an error (the deadline passed)", iter, r)
		}
		h.Call(func(consistency.Replica) {}) // the loop has taken both queues
		rep.mu.Lock()
		started := false
		for _, g := range rep.got {
			if string(g.Cmd.Args[1]) == val {
				started = true
			}
		}
		rep.mu.Unlock()
		switch r.Err.Code {
		case consistency.CodeUnavailable:
			cancelFirst++
			if started {
				t.Fatalf("iteration %d: the replica got a request its caller was told did not start", iter)
			}
		case consistency.CodeTimeout:
			if !started {
				t.Fatalf("iteration %d: TIMEOUT (outcome unknown) for a request the replica never got", iter)
			}
		default:
			t.Fatalf("iteration %d: %+v, want UNAVAILABLE or TIMEOUT", iter, r)
		}
	}
	if cancelFirst == 0 {
		t.Fatal("the loop never took the cancel before the job: the race was not exercised")
	}
	t.Logf("cancel taken before the job in %d of 40 iterations", cancelFirst)
}
