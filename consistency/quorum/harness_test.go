package quorum

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// cluster is a tiny deterministic driver for tests: replicas, a message
// queue with seeded latency and drops, a virtual clock with per-node skew,
// partitions and crashes (a crash restarts the replica from the engine's
// synced state).
// tb is what the harness needs of testing.T and rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

type cluster struct {
	t       tb
	seed    uint64
	rnd     *rand.Rand
	ids     []nodeID
	peers   []nodeID // the replicas' Config.Peers (nil: ids)
	params  map[string]string
	bug     string
	eng     map[nodeID]*core.MemEngine
	reps    map[nodeID]consistency.Replica
	skew    map[nodeID]time.Duration
	now     time.Time
	queue   []flight
	seq     uint64
	blocked map[[2]nodeID]bool
	dropP   float64
	resps   map[nodeID]map[uint64]consistency.Response
	nextReq uint64
	resolv  Resolver
	trace   uint64 // running hash of every output, for determinism tests
}

type flight struct {
	at  time.Time
	seq uint64
	m   consistency.Message
}

const tickEvery = 10 * time.Millisecond

func newCluster(t tb, n int, params map[string]string, bug string, seed uint64) *cluster {
	c := &cluster{t: t, seed: seed, rnd: rand.New(rand.NewPCG(seed, 7)), params: params, bug: bug,
		eng: map[nodeID]*core.MemEngine{}, reps: map[nodeID]consistency.Replica{}, skew: map[nodeID]time.Duration{},
		now: time.Unix(1_700_000_000, 0), blocked: map[[2]nodeID]bool{}, resps: map[nodeID]map[uint64]consistency.Response{}}
	for i := 0; i < n; i++ {
		c.ids = append(c.ids, nodeID(fmt.Sprintf("n%d", i+1)))
	}
	for _, id := range c.ids {
		c.eng[id] = core.NewMemEngine()
		c.start(id)
	}
	return c
}

func (c *cluster) fatalf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("seed %d: %s", c.seed, fmt.Sprintf(format, args...))
}

func (c *cluster) start(id nodeID) {
	peers := c.ids
	if c.peers != nil {
		peers = c.peers
	}
	cfg := consistency.Config{ID: id, Peers: peers, Engine: c.eng[id], Rand: rand.New(rand.NewPCG(c.seed, uint64(len(id)))), Params: c.params, Bug: c.bug}
	var r consistency.Replica
	var err error
	if c.resolv != nil {
		r, err = NewWithResolver(cfg, c.resolv)
	} else {
		r, err = New(cfg)
	}
	if err != nil {
		c.fatalf("starting %s: %v", id, err)
	}
	c.reps[id] = r
}

func (c *cluster) rep(id nodeID) *Replica { return c.reps[id].(*Replica) }

// crash loses the node's unsynced state and restarts it at once.
func (c *cluster) crash(id nodeID) {
	c.eng[id] = c.eng[id].SyncedClone()
	c.start(id)
}

func (c *cluster) local(id nodeID) time.Time { return c.now.Add(c.skew[id]) }

func (c *cluster) collect(id nodeID) {
	rd := c.reps[id].Ready()
	if rd.Sync {
		if err := c.eng[id].Sync(); err != nil {
			c.fatalf("sync %s: %v", id, err)
		}
	}
	for _, m := range rd.Messages {
		c.trace = core.Mix64(c.trace ^ hashString(string(m.To)+string(m.Body)))
		if m.From != id {
			c.fatalf("message from %s emitted by %s", m.From, id)
		}
		if c.blocked[[2]nodeID{m.From, m.To}] || (c.dropP > 0 && c.rnd.Float64() < c.dropP) {
			continue
		}
		c.seq++
		lat := time.Duration(1+c.rnd.IntN(4)) * time.Millisecond
		c.queue = append(c.queue, flight{at: c.now.Add(lat), seq: c.seq, m: m})
	}
	for _, r := range rd.Responses {
		c.trace = core.Mix64(c.trace ^ hashString(fmt.Sprint(id, r.ID, str(r), vals(r))))
		if c.resps[id] == nil {
			c.resps[id] = map[uint64]consistency.Response{}
		}
		c.resps[id][r.ID] = r
	}
}

// step advances the clock to the next event (a message due or a tick, at
// most 1ms... tickEvery ahead), delivering due messages and ticking.
func (c *cluster) step() { c.stepUntil(c.now.Add(tickEvery)) }

func (c *cluster) stepUntil(limit time.Time) {
	sort.Slice(c.queue, func(i, j int) bool {
		if !c.queue[i].at.Equal(c.queue[j].at) {
			return c.queue[i].at.Before(c.queue[j].at)
		}
		return c.queue[i].seq < c.queue[j].seq
	})
	next := c.now.Truncate(tickEvery).Add(tickEvery)
	if len(c.queue) > 0 && c.queue[0].at.Before(next) {
		next = c.queue[0].at
	}
	if next.After(limit) {
		next = limit
	}
	if !next.After(c.now) {
		next = c.now.Add(time.Millisecond)
	}
	c.now = next
	n := 0
	for n < len(c.queue) && !c.queue[n].at.After(c.now) {
		n++
	}
	due := c.queue[:n]
	c.queue = append([]flight(nil), c.queue[n:]...)
	for _, f := range due {
		if c.blocked[[2]nodeID{f.m.From, f.m.To}] {
			continue
		}
		c.reps[f.m.To].Receive(c.local(f.m.To), f.m)
		c.collect(f.m.To)
	}
	if c.now.Equal(c.now.Truncate(tickEvery)) {
		for _, id := range c.ids {
			c.reps[id].Tick(c.local(id))
			c.collect(id)
		}
	}
}

func (c *cluster) run(d time.Duration) {
	for end := c.now.Add(d); c.now.Before(end); {
		c.stepUntil(end)
	}
}

func (c *cluster) submit(at nodeID, cmd core.Command, opts consistency.Options, token []byte) uint64 {
	c.nextReq++
	id := c.nextReq
	c.reps[at].Request(c.local(at), consistency.Request{ID: id, Client: "c", Cmd: &cmd, Opts: opts, Token: token})
	c.collect(at)
	return id
}

// do runs a request to completion (up to 3s of virtual time).
func (c *cluster) do(at nodeID, opts consistency.Options, token []byte, name string, args ...string) consistency.Response {
	c.t.Helper()
	id := c.submit(at, core.Cmd(name, args...), opts, token)
	for end := c.now.Add(3 * time.Second); c.now.Before(end); {
		if r, ok := c.resps[at][id]; ok {
			delete(c.resps[at], id)
			return r
		}
		c.step()
	}
	c.fatalf("%s %v at %s: no response", name, args, at)
	return consistency.Response{}
}

func (c *cluster) partition(groups ...[]nodeID) {
	c.blocked = map[[2]nodeID]bool{}
	group := map[nodeID]int{}
	for i, g := range groups {
		for _, id := range g {
			group[id] = i + 1
		}
	}
	for _, a := range c.ids {
		for _, b := range c.ids {
			if a != b && group[a] != group[b] {
				c.blocked[[2]nodeID{a, b}] = true
			}
		}
	}
}

func (c *cluster) isolate(id nodeID) {
	var rest []nodeID
	for _, x := range c.ids {
		if x != id {
			rest = append(rest, x)
		}
	}
	c.partition([]nodeID{id}, rest)
}

func (c *cluster) heal() { c.blocked = map[[2]nodeID]bool{} }

func (c *cluster) dump(id nodeID) map[string]string {
	d, err := c.reps[id].Dump(c.local(id))
	if err != nil {
		c.fatalf("dump %s: %v", id, err)
	}
	return d
}

// owners of key, per the ring.
func (c *cluster) owners(key string) []nodeID { return c.rep(c.ids[0]).Holders(key) }

// nonOwner returns a node that does not own key ("" if all do).
func (c *cluster) nonOwner(key string) nodeID {
	own := map[nodeID]bool{}
	for _, o := range c.owners(key) {
		own[o] = true
	}
	for _, id := range c.ids {
		if !own[id] {
			return id
		}
	}
	return ""
}

// divergence describes keys whose owners disagree ("" when converged).
func (c *cluster) divergence() string {
	dumps := map[nodeID]map[string]string{}
	keys := map[string]bool{}
	for _, id := range c.ids {
		dumps[id] = c.dump(id)
		for k := range dumps[id] {
			keys[k] = true
		}
	}
	var bad []string
	for k := range keys {
		own := c.owners(k)
		ref := dumps[own[0]][k]
		for _, o := range own[1:] {
			if dumps[o][k] != ref {
				bad = append(bad, fmt.Sprintf("%q: %s=%s %s=%s", k, own[0], ref, o, dumps[o][k]))
			}
		}
		// Non-owners must not keep it in their main store.
		for _, id := range c.ids {
			if _, ok := dumps[id][k]; ok && !contains(own, id) {
				bad = append(bad, fmt.Sprintf("%q held by non-owner %s", k, id))
			}
		}
	}
	sort.Strings(bad)
	return strings.Join(bad, "; ")
}

func contains(s []nodeID, x nodeID) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func isErr(r consistency.Response) bool { return r.Reply.Kind == core.KindError }

func str(r consistency.Response) string {
	switch r.Reply.Kind {
	case core.KindError:
		return "ERR:" + r.Reply.Err.Error()
	case core.KindNil:
		return "(nil)"
	case core.KindInt:
		return fmt.Sprint(r.Reply.Int)
	case core.KindArray:
		var s []string
		for _, x := range r.Reply.Array {
			s = append(s, string(x.Str))
		}
		return "[" + strings.Join(s, ",") + "]"
	}
	return string(r.Reply.Str)
}

func vals(r consistency.Response) string {
	if len(r.Values) == 0 {
		return str(r)
	}
	var s []string
	for _, v := range r.Values {
		s = append(s, string(v))
	}
	return "{" + strings.Join(s, ",") + "}"
}

// trace hashes every message and response the cluster produced so far
// (collected by recordTrace).
func (c *cluster) traceHash() uint64 { return c.trace }
