package causal

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// cluster is a tiny deterministic driver for tests of this package: a
// virtual clock, a message queue ordered by delivery time, per-link cuts and
// crashes that keep only synced engine state. The simulator (package sim)
// is the full-featured driver; this one keeps the package's tests
// self-contained.
type cluster struct {
	t        testing.TB
	now      time.Time
	rnd      *rand.Rand
	peers    []consistency.NodeID
	params   map[string]string
	bug      string
	regionOf map[consistency.NodeID]string
	nodes    map[consistency.NodeID]*tnode
	q        evq
	seq      uint64
	cut      map[[2]consistency.NodeID]bool
	intra    time.Duration // latency inside a region
	inter    time.Duration // latency between regions
	jitter   time.Duration
	nextReq  uint64
	replies  map[uint64]consistency.Response
}

type tnode struct {
	rep  *Replica
	eng  *core.MemEngine
	down bool
}

type ev struct {
	at  time.Time
	seq uint64
	m   consistency.Message
}

type evq []ev

func (q evq) Len() int { return len(q) }
func (q evq) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q evq) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *evq) Push(x any)   { *q = append(*q, x.(ev)) }
func (q *evq) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

func newCluster(t testing.TB, seed uint64, regions string, bug string) *cluster {
	return newClusterWith(t, seed, regions, bug, nil)
}

// newClusterWith is newCluster with extra strategy parameters.
func newClusterWith(t testing.TB, seed uint64, regions string, bug string, params map[string]string) *cluster {
	c := &cluster{
		t:       t,
		now:     time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		rnd:     rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		params:  map[string]string{"regions": regions},
		bug:     bug,
		nodes:   map[consistency.NodeID]*tnode{},
		cut:     map[[2]consistency.NodeID]bool{},
		intra:   time.Millisecond,
		inter:   50 * time.Millisecond,
		jitter:  20 * time.Millisecond,
		replies: map[uint64]consistency.Response{},
	}
	for k, v := range params {
		c.params[k] = v
	}
	for _, part := range strings.Split(regions, ";") {
		_, nodes, _ := strings.Cut(part, ":")
		for _, n := range strings.Split(nodes, ",") {
			c.peers = append(c.peers, consistency.NodeID(n))
		}
	}
	var err error
	c.regionOf, err = ParseRegions(regions, c.peers)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.peers {
		c.nodes[p] = &tnode{eng: core.NewMemEngine()}
		c.start(p)
	}
	return c
}

func (c *cluster) start(id consistency.NodeID) {
	n := c.nodes[id]
	rep, err := NewReplica(consistency.Config{ID: id, Peers: c.peers, Engine: n.eng, Rand: rand.New(rand.NewPCG(uint64(len(id)), 7)), Params: c.params, Bug: c.bug})
	if err != nil {
		c.t.Fatal(err)
	}
	n.rep, n.down = rep, false
}

// crash loses everything not synced; restart brings the node back.
func (c *cluster) crash(id consistency.NodeID) {
	n := c.nodes[id]
	n.eng = n.eng.SyncedClone()
	n.rep, n.down = nil, true
}

func (c *cluster) restart(id consistency.NodeID) { c.start(id) }

// collect drains a node's Ready, honouring Sync before sending.
func (c *cluster) collect(id consistency.NodeID) {
	n := c.nodes[id]
	rd := n.rep.Ready()
	if rd.Sync {
		if err := n.eng.Sync(); err != nil {
			c.t.Fatal(err)
		}
	}
	for _, m := range rd.Messages {
		if c.cut[[2]consistency.NodeID{m.From, m.To}] {
			continue
		}
		d := c.intra
		if c.regionOf[m.From] != c.regionOf[m.To] {
			d = c.inter
		}
		d += time.Duration(c.rnd.Int64N(int64(c.jitter) + 1))
		c.seq++
		heap.Push(&c.q, ev{at: c.now.Add(d), seq: c.seq, m: m})
	}
	for _, r := range rd.Responses {
		c.replies[r.ID] = r
	}
}

// run advances virtual time by d, delivering messages and ticking every
// node each 10 ms.
func (c *cluster) run(d time.Duration) {
	end := c.now.Add(d)
	nextTick := c.now.Add(10 * time.Millisecond)
	for {
		if len(c.q) > 0 && !c.q[0].at.After(nextTick) && !c.q[0].at.After(end) {
			e := heap.Pop(&c.q).(ev)
			c.now = e.at
			if n := c.nodes[e.m.To]; !n.down && !c.cut[[2]consistency.NodeID{e.m.From, e.m.To}] {
				n.rep.Receive(c.now, e.m)
				c.collect(e.m.To)
			}
			continue
		}
		if nextTick.After(end) {
			c.now = end
			return
		}
		c.now = nextTick
		for _, p := range c.peers {
			if n := c.nodes[p]; !n.down {
				n.rep.Tick(c.now)
				c.collect(p)
			}
		}
		nextTick = nextTick.Add(10 * time.Millisecond)
	}
}

// do sends a request to node at and runs until it is answered (or 5 s).
func (c *cluster) do(at consistency.NodeID, tok []byte, name string, args ...string) consistency.Response {
	c.nextReq++
	id := c.nextReq
	cmd := core.Cmd(name, args...)
	c.nodes[at].rep.Request(c.now, consistency.Request{ID: id, Cmd: &cmd, Token: tok})
	c.collect(at)
	for i := 0; i < 500; i++ {
		if r, ok := c.replies[id]; ok {
			delete(c.replies, id)
			return r
		}
		c.run(10 * time.Millisecond)
	}
	c.t.Fatalf("request %d %s %v at %s: no reply within 5s", id, name, args, at)
	return consistency.Response{}
}

// partition cuts every link between two regions, both ways.
func (c *cluster) partition(a, b string, on bool) {
	for _, x := range c.peers {
		for _, y := range c.peers {
			if (c.regionOf[x] == a && c.regionOf[y] == b) || (c.regionOf[x] == b && c.regionOf[y] == a) {
				c.cut[[2]consistency.NodeID{x, y}] = on
			}
		}
	}
}

// regionDump merges the dumps of a region's nodes (each holds its shard).
func (c *cluster) regionDump(reg string) map[string]string {
	out := map[string]string{}
	for _, p := range c.peers {
		if c.regionOf[p] != reg || c.nodes[p].down {
			continue
		}
		d, err := c.nodes[p].rep.Dump(c.now)
		if err != nil {
			c.t.Fatal(err)
		}
		for k, v := range d {
			out[k] = v
		}
	}
	return out
}

func (c *cluster) regions() []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range c.regionOf {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

func replyString(r core.Reply) string {
	switch r.Kind {
	case core.KindNil:
		return "(nil)"
	case core.KindBulk:
		return string(r.Str)
	case core.KindStatus:
		return string(r.Str)
	case core.KindInt:
		return fmt.Sprint(r.Int)
	case core.KindError:
		return "ERR:" + r.Err.Error()
	}
	return fmt.Sprintf("%+v", r)
}
