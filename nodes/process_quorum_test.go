package nodes

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// processCluster is three `dialkv node` processes (the test binary
// re-executed) with gossip on explicit ports.
type processCluster struct {
	t                      *testing.T
	ids                    []string
	client, peer, gossip   []string
	dirs                   []string
	procs                  []*childNode
	peersFlag, clusterName string
}

func newProcessCluster(t *testing.T) *processCluster {
	addrs := freeAddrs(t, 9)
	pc := &processCluster{t: t, ids: []string{"n1", "n2", "n3"}, clusterName: "kt"}
	var ps []ClusterPeer
	for i, id := range pc.ids {
		pc.client = append(pc.client, addrs[3*i])
		pc.peer = append(pc.peer, addrs[3*i+1])
		pc.gossip = append(pc.gossip, addrs[3*i+2])
		pc.dirs = append(pc.dirs, t.TempDir())
		ps = append(ps, ClusterPeer{ID: id, Client: addrs[3*i], Peer: addrs[3*i+1]})
	}
	pc.peersFlag = FormatPeers(ps)
	pc.procs = make([]*childNode, 3)
	for i := range pc.ids {
		pc.start(i)
	}
	return pc
}

func (pc *processCluster) start(i int) {
	var join []string
	for j, g := range pc.gossip {
		if j != i {
			join = append(join, g)
		}
	}
	pc.procs[i] = startChild(pc.t, "--id", pc.ids[i], "--listen", pc.client[i], "--data", pc.dirs[i],
		"--fsync", "always", "--cluster", pc.clusterName, "--peers", pc.peersFlag,
		"--gossip", pc.gossip[i], "--join", strings.Join(join, ","), "--log-level", "warn")
}

func (pc *processCluster) kill(i int) {
	pc.procs[i].cmd.Process.Kill() // SIGKILL
	pc.procs[i].cmd.Wait()
}

// call runs one command at node i with options o; a transport failure or an
// exception is the error.
func (pc *processCluster) call(i int, o *gen.RequestOptions, name string, args ...string) (*gen.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, pc.client[i], transport.DialOptions{})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r, err := c.Call(ctx, o, cmd(name, args...))
	if err != nil {
		return nil, err
	}
	return r.Replies[0], nil
}

func quorumOpts(ns string, r, w int32) *gen.RequestOptions {
	o := &gen.RequestOptions{Ns: &ns}
	if r != 0 {
		o.R = &r
	}
	if w != 0 {
		o.W = &w
	}
	return o
}

// TestProcessKill9SloppyQuorum: three node processes, a quorum namespace
// with N=2, W=2, sloppy quorum, read repair and anti-entropy off. Writers
// write unique keys at every node; n2 is killed with SIGKILL in the middle
// and restarted on its data directory. Gossip marks it down (writes for its
// keys go to the fallback as hints) and up again (the hints are delivered).
// Then: every acknowledged write is readable with R=ALL at every node, and
// — with n1 and n3 killed — n2 alone holds every acknowledged write of the
// keys it owns, which only hinted handoff can have brought it.
func TestProcessKill9SloppyQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	pc := newProcessCluster(t)
	const ns = "kv"
	params := []string{"n", "2", "r", "1", "w", "2", "sloppy", "true", "read_repair", "off", "aae_interval", "1h", "hint_interval", "100ms", "timeout", "1s"}
	ctx := context.Background()
	c := dial(t, pc.client[0])
	spec := map[string]string{}
	for i := 0; i < len(params); i += 2 {
		spec[params[i]] = params[i+1]
	}
	if err := c.CreateNamespace(ctx, &gen.NamespaceSpec{Name: ns, Strategy: "quorum", Params: spec}); err != nil {
		t.Fatal(err)
	}
	// The namespace reaches every node (forwarded, or pulled every 2 s).
	for i := range 3 {
		deadline := time.Now().Add(15 * time.Second)
		for {
			r, err := pc.call(i, quorumOpts(ns, 0, 1), "SET", "warm", "1")
			if err == nil && string(r.Str) == "OK" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("namespace not serving at n%d: %v %v", i+1, r, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	var (
		mu      sync.Mutex
		acked   = map[string]string{}
		unknown atomic.Int64
		stop    atomic.Bool
		wg      sync.WaitGroup
		down    atomic.Int32 // 1 + index of the node that is down, 0: none
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; !stop.Load(); i++ {
				node := rnd.IntN(3)
				if int(down.Load()) == node+1 {
					continue
				}
				k, v := fmt.Sprintf("w%d:%d", w, i), fmt.Sprintf("v%d.%d", w, i)
				r, err := pc.call(node, quorumOpts(ns, 0, 2), "SET", k, v)
				if err == nil && r.Kind != gen.ReplyKind_ERROR && string(r.Str) == "OK" {
					mu.Lock()
					acked[k] = v
					mu.Unlock()
				} else {
					unknown.Add(1)
				}
			}
		}()
	}
	time.Sleep(time.Second)
	down.Store(2)
	pc.kill(1)
	time.Sleep(3 * time.Second) // gossip finds n2 dead; writes for its keys become hints
	pc.start(1)
	down.Store(0)
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d writes acknowledged (%d not): the load proves nothing", len(acked), unknown.Load())
	}
	t.Logf("%d writes acknowledged, %d failed or unknown", len(acked), unknown.Load())

	// Convergence: every acknowledged write, at every node, with R=ALL.
	all := int32(quorum.ALL)
	for i := range 3 {
		for k, v := range acked {
			var r *gen.Reply
			var err error
			for try := 0; try < 50; try++ {
				if r, err = pc.call(i, quorumOpts(ns, all, 0), "GET", k); err == nil && string(r.Str) == v {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil || string(r.Str) != v {
				t.Fatalf("GET %s (R=ALL) at n%d = %v, %v; want the acknowledged %q", k, i+1, r, err, v)
			}
		}
	}

	// Hinted handoff: n2's own copies. The same ring as the nodes' (same
	// peers, params and hash) tells which keys n2 owns.
	ring, err := quorum.New(consistency.Config{ID: "n1", Peers: []consistency.NodeID{"n1", "n2", "n3"}, Engine: core.NewMemEngine(), Rand: rand.New(rand.NewPCG(1, 1)), Params: spec})
	if err != nil {
		t.Fatal(err)
	}
	owned := map[string]string{}
	for k, v := range acked {
		for _, h := range ring.(*quorum.Replica).Holders(k) {
			if h == "n2" {
				owned[k] = v
			}
		}
	}
	if len(owned) == 0 {
		t.Fatal("n2 owns none of the acknowledged keys: the test proves nothing")
	}
	// Let the handoff finish: poll n2 (R=1 at n2 answers from its own copy
	// first) until it has them all, then cut it off from the others and
	// check once more.
	deadline := time.Now().Add(20 * time.Second)
	for {
		missing := 0
		for k, v := range owned {
			if r, err := pc.call(1, quorumOpts(ns, 1, 0), "GET", k); err != nil || string(r.Str) != v {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	pc.kill(0)
	pc.kill(2)
	for k, v := range owned {
		r, err := pc.call(1, quorumOpts(ns, 1, 0), "GET", k)
		if err != nil || string(r.Str) != v {
			t.Fatalf("n2 alone: GET %s (R=1) = %v, %v; want the acknowledged %q (hint not delivered)", k, r, err, v)
		}
	}
	t.Logf("n2 holds all %d acknowledged writes of the keys it owns", len(owned))
}
