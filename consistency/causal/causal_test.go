package causal

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

const twoRegions = "us:u1,u2;eu:e1,e2"

// keysWithOwners finds two keys whose owners differ in every region.
func keysWithOwners(t *testing.T, c *cluster) (string, string) {
	r := c.nodes["u1"].rep
	for i := 0; i < 100; i++ {
		for j := i + 1; j < 100; j++ {
			x, y := fmt.Sprintf("x%d", i), fmt.Sprintf("y%d", j)
			if r.owner("us", x) != r.owner("us", y) && r.owner("eu", x) != r.owner("eu", y) {
				return x, y
			}
		}
	}
	t.Fatal("no keys with distinct owners")
	return "", ""
}

func TestParseRegions(t *testing.T) {
	peers := []consistency.NodeID{"a", "b", "c"}
	for _, tc := range []struct {
		spec string
		ok   bool
	}{
		{"", true},
		{"r1:a,b;r2:c", true},
		{"r1:a,b", false},           // c in no region
		{"r1:a,b;r2:c;r3:d", false}, // d is no peer
		{"r1:a,b;r2:b,c", false},    // b twice
		{"r1", false},
	} {
		_, err := ParseRegions(tc.spec, peers)
		if (err == nil) != tc.ok {
			t.Errorf("ParseRegions(%q) err=%v, want ok=%v", tc.spec, err, tc.ok)
		}
	}
}

func TestWriteIsAcknowledgedLocallyAndReplicated(t *testing.T) {
	c := newCluster(t, 1, twoRegions, "")
	c.partition("us", "eu", true)
	if r := c.do("u1", nil, "SET", "k", "v1"); replyString(r.Reply) != "OK" {
		t.Fatalf("SET during a partition between regions: %s, want OK (local acknowledgement)", replyString(r.Reply))
	}
	if r := c.do("e1", nil, "GET", "k"); replyString(r.Reply) != "(nil)" {
		t.Fatalf("eu read during the partition: %s, want (nil)", replyString(r.Reply))
	}
	c.partition("us", "eu", false)
	c.run(time.Second)
	if r := c.do("e2", nil, "GET", "k"); replyString(r.Reply) != "v1" {
		t.Fatalf("eu read after healing: %s, want v1", replyString(r.Reply))
	}
}

func TestUnsupportedCommandsAreTypedErrors(t *testing.T) {
	c := newCluster(t, 1, twoRegions, "")
	for _, args := range [][]string{{"LPUSH", "k", "v"}, {"GET"}, {"SET", "k", "v", "EX", "1"}} {
		r := c.do("u1", nil, args[0], args[1:]...)
		if r.Reply.Err == nil || r.Reply.Err.Code != "ERR" {
			t.Errorf("%v: %s, want an ERR reply", args, replyString(r.Reply))
		}
	}
	if r := c.do("u1", []byte("garbage"), "GET", "k"); r.Reply.Err == nil {
		t.Errorf("garbage token accepted: %s", replyString(r.Reply))
	}
}

// TestSessionFollowsClientAcrossRegions: a client that writes in us and
// then reads in eu with its token sees its write; without the token, or
// with the ignore-token bug, it does not.
func TestSessionFollowsClientAcrossRegions(t *testing.T) {
	for _, tc := range []struct {
		bug      string
		useToken bool
		want     string
	}{
		{"", true, "v1"},
		{"", false, "(nil)"},
		{BugIgnoreToken, true, "(nil)"},
	} {
		t.Run(fmt.Sprintf("bug=%q/token=%v", tc.bug, tc.useToken), func(t *testing.T) {
			c := newCluster(t, 2, twoRegions, tc.bug)
			w := c.do("u1", nil, "SET", "k", "v1")
			tok := w.Token
			if !tc.useToken {
				tok = nil
			}
			if r := c.do("e1", tok, "GET", "k"); replyString(r.Reply) != tc.want {
				t.Fatalf("read in eu right after writing in us: %s, want %s", replyString(r.Reply), tc.want)
			}
		})
	}
}

// TestTokenWaitTimesOutAsUnavailable: while regions are partitioned, a
// moved client is refused (retryable) rather than served an older state.
func TestTokenWaitTimesOutAsUnavailable(t *testing.T) {
	c := newCluster(t, 3, twoRegions, "")
	c.partition("us", "eu", true)
	w := c.do("u1", nil, "SET", "k", "v1")
	r := c.do("e1", w.Token, "GET", "k")
	if r.Reply.Err == nil || r.Reply.Err.Code != consistency.CodeUnavailable {
		t.Fatalf("moved client during a partition: %s, want UNAVAILABLE", replyString(r.Reply))
	}
}

// TestRemoteWriteWaitsForItsDependencies: y=1 is written after the client
// saw x=1; a region that receives y before x must not show y without x.
func TestRemoteWriteWaitsForItsDependencies(t *testing.T) {
	for _, tc := range []struct {
		bug       string
		violation bool
	}{{"", false}, {BugNoDepCheck, true}} {
		t.Run(fmt.Sprintf("bug=%q", tc.bug), func(t *testing.T) {
			c := newCluster(t, 4, twoRegions, tc.bug)
			x, y := keysWithOwners(t, c)
			ux, ex := c.nodes["u1"].rep.owner("us", x), c.nodes["u1"].rep.owner("eu", x)
			c.cut[[2]consistency.NodeID{ux, ex}] = true // x's replication is delayed
			w1 := c.do("u1", nil, "SET", x, "1")
			w2 := c.do("u1", w1.Token, "SET", y, "1")
			_ = w2
			c.run(500 * time.Millisecond)
			gy := replyString(c.do("e1", nil, "GET", y).Reply)
			gx := replyString(c.do("e1", nil, "GET", x).Reply)
			violation := gy == "1" && gx != "1"
			if violation != tc.violation {
				t.Fatalf("in eu: %s=%s %s=%s; violation=%v, want %v", y, gy, x, gx, violation, tc.violation)
			}
			c.cut[[2]consistency.NodeID{ux, ex}] = false
			c.run(time.Second)
			if gx, gy := replyString(c.do("e1", nil, "GET", x).Reply), replyString(c.do("e1", nil, "GET", y).Reply); gx != "1" || gy != "1" {
				t.Fatalf("after healing: %s=%s %s=%s, want both 1", x, gx, y, gy)
			}
		})
	}
}

// TestCrashKeepsAcknowledgedWritesAndTheirReplication: an acknowledged
// write survives a crash of its owner, and its replication still reaches the
// other region after the restart.
func TestCrashKeepsAcknowledgedWritesAndTheirReplication(t *testing.T) {
	c := newCluster(t, 5, twoRegions, "")
	c.partition("us", "eu", true)
	owner := c.nodes["u1"].rep.owner("us", "k")
	c.do(owner, nil, "SET", "k", "v1")
	c.crash(owner)
	c.restart(owner)
	if r := c.do(owner, nil, "GET", "k"); replyString(r.Reply) != "v1" {
		t.Fatalf("after crash: %s, want v1", replyString(r.Reply))
	}
	c.partition("us", "eu", false)
	c.run(time.Second)
	if r := c.do("e1", nil, "GET", "k"); replyString(r.Reply) != "v1" {
		t.Fatalf("eu after restart and heal: %s, want v1", replyString(r.Reply))
	}
}

// TestRandomSchedulesConvergeAndKeepSessions drives random clients that move
// between nodes and regions, with partitions and crashes, then heals and
// checks that every region holds the same data and that each client always
// read its own latest write of its private key (in siblings mode: among the
// values the read returned), in both conflict-handling modes.
func TestRandomSchedulesConvergeAndKeepSessions(t *testing.T) {
	seeds := 20
	if testing.Short() {
		seeds = 5
	}
	for _, mode := range []string{ResolveLWW, ResolveSiblings} {
		for seed := uint64(1); seed <= uint64(seeds); seed++ {
			t.Run(fmt.Sprintf("%s/%d", mode, seed), func(t *testing.T) {
				randomSchedule(t, seed, mode)
			})
		}
	}
}

func randomSchedule(t *testing.T, seed uint64, mode string) {
	c := newClusterWith(t, seed, "us:u1,u2;eu:e1,e2;ap:a1", "", map[string]string{"resolve": mode})
	type client struct {
		tok  []byte
		last string
	}
	clients := make([]*client, 4)
	for i := range clients {
		clients[i] = &client{}
	}
	for step := 0; step < 150; step++ {
		switch c.rnd.IntN(20) {
		case 0:
			regs := c.regions()
			a, b := regs[c.rnd.IntN(len(regs))], regs[c.rnd.IntN(len(regs))]
			if a != b {
				c.partition(a, b, c.rnd.IntN(2) == 0)
			}
		case 1:
			p := c.peers[c.rnd.IntN(len(c.peers))]
			if c.nodes[p].down {
				c.restart(p)
			} else {
				c.crash(p)
			}
		}
		ci := c.rnd.IntN(len(clients))
		cl := clients[ci]
		at := c.peers[c.rnd.IntN(len(c.peers))]
		if c.nodes[at].down {
			continue
		}
		private := fmt.Sprintf("c%d", ci)
		switch c.rnd.IntN(3) {
		case 0:
			v := fmt.Sprintf("%d-%d", ci, step)
			r := c.do(at, cl.tok, "SET", private, v)
			if r.Reply.Err == nil {
				cl.tok, cl.last = r.Token, v
			} else if r.Reply.Err.Code == consistency.CodeTimeout {
				// Outcome unknown: the client can no longer tell
				// which value is its latest; start a new session.
				cl.tok, cl.last = nil, ""
			}
		case 1:
			r := c.do(at, cl.tok, "GET", private)
			if r.Reply.Err != nil {
				continue
			}
			cl.tok = r.Token
			if cl.last != "" && replyString(r.Reply) != cl.last && !slices.ContainsFunc(r.Values, func(v []byte) bool { return string(v) == cl.last }) {
				t.Fatalf("step %d: client %d read %s at %s, want its own last write %s (seed %d)", step, ci, replyString(r.Reply), at, cl.last, seed)
			}
		case 2:
			r := c.do(at, cl.tok, "SET", "shared", fmt.Sprintf("s%d-%d", ci, step))
			if r.Reply.Err == nil {
				cl.tok = r.Token
			}
		}
		c.run(time.Duration(c.rnd.IntN(30)) * time.Millisecond)
	}
	for _, p := range c.peers {
		if c.nodes[p].down {
			c.restart(p)
		}
	}
	c.cut = map[[2]consistency.NodeID]bool{}
	c.run(3 * time.Second)
	regs := c.regions()
	first := c.regionDump(regs[0])
	for _, reg := range regs[1:] {
		if d := c.regionDump(reg); !maps.Equal(first, d) {
			t.Fatalf("regions diverge after healing (seed %d): %s=%v %s=%v", seed, regs[0], first, reg, d)
		}
	}
}

// TestTokensStayBounded: a context grows with the session's unstable
// causal past and shrinks to nothing once those writes are applied in every
// region.
func TestTokensStayBounded(t *testing.T) {
	c := newCluster(t, 6, twoRegions, "")
	c.partition("us", "eu", true)
	var tok []byte
	for i := 0; i < 10; i++ {
		r := c.do("u1", tok, "SET", fmt.Sprintf("r%d", i), "v")
		tok = r.Token
	}
	var before token
	if err := json.Unmarshal(tok, &before); err != nil || len(before.Deps) != 10 {
		t.Fatalf("context during a partition: %s (err %v), want 10 deps", tok, err)
	}
	c.partition("us", "eu", false)
	c.run(time.Second)
	r := c.do("u1", tok, "GET", "r0")
	var after token
	if err := json.Unmarshal(r.Token, &after); err != nil || len(after.Deps) != 0 {
		t.Fatalf("context after the writes became stable: %s (err %v), want no deps", r.Token, err)
	}
}

// TestRepliesCarryVersionsInLWWOrder: the versions replies report order
// writes exactly as last-writer-wins does, so checkers can use them.
func TestRepliesCarryVersionsInLWWOrder(t *testing.T) {
	c := newCluster(t, 7, twoRegions, "")
	var last uint64
	for i := 0; i < 5; i++ {
		w := c.do("u1", nil, "SET", "k", fmt.Sprint(i))
		if w.Reply.Version <= last {
			t.Fatalf("write %d: version %d not above %d", i, w.Reply.Version, last)
		}
		last = w.Reply.Version
	}
	if r := c.do("u2", nil, "GET", "k"); r.Reply.Version != last {
		t.Fatalf("read version %d, want the last write's %d", r.Reply.Version, last)
	}
	r := c.nodes["u1"].rep
	a := Version{Wall: 5, Logical: 1, Node: "e1"}
	b := Version{Wall: 5, Logical: 1, Node: "u2"}
	if !(r.rank(a) < r.rank(b)) || !(r.rank(Version{Wall: 4, Logical: 9, Node: "u2"}) < r.rank(a)) {
		t.Fatal("rank does not preserve version order")
	}
}

// TestSiblingsKeepConcurrentCrossRegionWrites: in siblings mode two writes
// of one key made concurrently in two regions become two siblings in both
// regions; a write replaces exactly the siblings its context saw (and its
// own region's earlier write), so a write that saw both collapses them in
// both regions — also when they had become stable before it was made, so
// that only the token's write context still names them.
func TestSiblingsKeepConcurrentCrossRegionWrites(t *testing.T) {
	c := newClusterWith(t, 8, twoRegions, "", map[string]string{"resolve": ResolveSiblings})
	expect := func(step, want string) {
		t.Helper()
		for _, reg := range c.regions() {
			if got := c.regionDump(reg)["k"]; got != want {
				t.Fatalf("%s: region %s holds %s, want %s", step, reg, got, want)
			}
		}
	}
	set := func(at consistency.NodeID, tok []byte, v string) {
		t.Helper()
		if r := c.do(at, tok, "SET", "k", v); replyString(r.Reply) != "OK" {
			t.Fatalf("SET %s at %s: %s", v, at, replyString(r.Reply))
		}
	}
	c.partition("us", "eu", true)
	set("u1", nil, "from-us")
	set("e1", nil, "from-eu")
	c.partition("us", "eu", false)
	c.run(time.Second)
	expect("concurrent writes", `siblings["from-eu","from-us"]`)
	both := [][]byte{[]byte("from-eu"), []byte("from-us")}
	var tok1 []byte
	for _, at := range []consistency.NodeID{"u2", "e2"} {
		r := c.do(at, nil, "GET", "k")
		if !slices.EqualFunc(r.Values, both, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Fatalf("read at %s: reply %s values %q, want siblings %q", at, replyString(r.Reply), r.Values, both)
		}
		tok1 = r.Token
	}

	// A write from a client that saw nothing replaces only its own
	// region's sibling (writes of a key in one region are ordered).
	set("u1", nil, "blind")
	c.run(time.Second)
	expect("blind write in us", `siblings["blind","from-eu"]`)

	// A write whose context saw from-us and from-eu but not blind keeps
	// blind.
	set("e2", tok1, "stale")
	c.run(time.Second)
	expect("write with an old context", `siblings["blind","stale"]`)

	// The resolving write: read both (already stable, so the token keeps
	// them only in its write context), move to the other region, write.
	r := c.do("e1", nil, "GET", "k")
	var parsed token
	if err := json.Unmarshal(r.Token, &parsed); err != nil || len(parsed.Deps) != 0 || len(parsed.Ctx) != 2 {
		t.Fatalf("token after reading stable siblings: %s (err %v), want no deps and 2 context versions", r.Token, err)
	}
	set("u2", r.Token, "merged")
	c.run(time.Second)
	expect("resolving write", `"merged"`)
	if r := c.do("e2", nil, "GET", "k"); replyString(r.Reply) != "merged" || r.Values != nil {
		t.Fatalf("read after resolving: %s %q, want merged alone", replyString(r.Reply), r.Values)
	}
}

// TestSiblingsParam: resolve takes lww or siblings, nothing else.
func TestSiblingsParam(t *testing.T) {
	for _, tc := range []struct {
		resolve string
		ok      bool
	}{{"", true}, {"lww", true}, {"siblings", true}, {"crdt", false}} {
		_, err := NewReplica(consistency.Config{ID: "a", Peers: []consistency.NodeID{"a"}, Engine: core.NewMemEngine(), Params: map[string]string{"resolve": tc.resolve}})
		if (err == nil) != tc.ok {
			t.Errorf("resolve=%q: err %v, want ok=%v", tc.resolve, err, tc.ok)
		}
	}
}

// TestLagSamplesAndMetadataCounters: a remote write's propagation lag is
// reported by its source region, close to the inter-region latency of the
// harness (50 ms + up to 20 ms jitter), and the counters add up the
// dependency metadata shipped.
func TestLagSamplesAndMetadataCounters(t *testing.T) {
	c := newCluster(t, 9, twoRegions, "")
	x, y := keysWithOwners(t, c)
	w := c.do("u1", nil, "SET", x, "1")
	c.do("u1", w.Token, "SET", y, "2") // depends on x
	c.run(time.Second)
	var lags []consistency.Sample
	var shipped, depBytes float64
	for _, p := range c.peers {
		lags = append(lags, c.nodes[p].rep.TakeSamples()...)
		ctr := c.nodes[p].rep.Counters()
		shipped += ctr["causal_dep_bytes_per_write_count"]
		depBytes += ctr["causal_dep_bytes_per_write_sum"]
	}
	if len(lags) != 2 {
		t.Fatalf("lag samples %v, want one per write applied in eu", lags)
	}
	for _, l := range lags {
		if l.Name != LagMetric || l.Label != "us" || l.Value < 0.045 || l.Value > 0.2 {
			t.Errorf("lag sample %+v: want %s from us between 45 ms and 200 ms", l, LagMetric)
		}
	}
	if shipped != 2 || depBytes <= 0 {
		t.Errorf("shipped %v writes with %v dep bytes, want 2 writes and some bytes (y depends on x)", shipped, depBytes)
	}
	if again := c.nodes["e1"].rep.TakeSamples(); len(again) != 0 {
		t.Errorf("samples taken twice: %v", again)
	}
}

// TestForwardedRequestsForgottenInOrder: a replica remembers forwarded
// requests (to drop duplicates) for 4 timeouts and Tick forgets them
// oldest first, exactly those older than that.
func TestForwardedRequestsForgottenInOrder(t *testing.T) {
	c := newCluster(t, 1, twoRegions, "")
	r := c.nodes["u1"].rep
	t0 := c.now
	cmd := core.Cmd("SET", "k", "v")
	for i := 0; i < 3; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		r.onForward(at, "u2", msg{Kind: kindForward, ID: uint64(i + 1), Cmd: &cmd, Deadline: at.Add(time.Second).UnixNano()})
	}
	r.Tick(t0.Add(4*r.timeout + 1500*time.Millisecond)) // past the first two
	if _, ok := r.seenFwd[fwdKey{"u2", 3}]; !ok || len(r.seenFwd) != 1 || len(r.seenOrder) != 1 {
		t.Fatalf("after 4 timeouts + 1.5 s: seen %v (order %v), want only request 3", r.seenFwd, r.seenOrder)
	}
	r.Tick(t0.Add(4*r.timeout + 3*time.Second))
	if len(r.seenFwd) != 0 || len(r.seenOrder) != 0 {
		t.Fatalf("seen %v (order %v), want none", r.seenFwd, r.seenOrder)
	}
}
