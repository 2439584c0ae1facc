package quorum

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

var def consistency.Options

func p(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestReadWriteEveryNodeCoordinates(t *testing.T) {
	for _, rw := range [][2]int{{1, 1}, {2, 2}, {ALL, 1}, {1, ALL}, {QUORUM, QUORUM}} {
		t.Run(fmt.Sprintf("R%d_W%d", rw[0], rw[1]), func(t *testing.T) {
			c := newCluster(t, 5, nil, "", 1)
			opts := consistency.Options{R: rw[0], W: rw[1]}
			for i, id := range c.ids {
				k := fmt.Sprintf("k%d", i)
				if got := c.do(id, opts, nil, "SET", k, "v"+k); str(got) != "OK" {
					c.fatalf("SET %s at %s: %s", k, id, str(got))
				}
				c.run(20 * time.Millisecond) // let W<N replicate
				for _, at := range c.ids {
					if got := c.do(at, opts, nil, "GET", k); str(got) != "v"+k {
						c.fatalf("GET %s at %s: %s", k, at, str(got))
					}
				}
			}
			if d := c.divergence(); d != "" {
				c.fatalf("diverged: %s", d)
			}
			if c.rep(c.ids[0]).Stats().Forwarded+c.rep(c.ids[1]).Stats().Forwarded+
				c.rep(c.ids[2]).Stats().Forwarded+c.rep(c.ids[3]).Stats().Forwarded+c.rep(c.ids[4]).Stats().Forwarded == 0 {
				c.fatalf("with 5 nodes and N=3 some writes must be forwarded to an owner")
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	c := newCluster(t, 3, nil, "", 1)
	cases := []struct {
		cmd  []string
		opts consistency.Options
		want string
	}{
		{[]string{"LPUSH", "k", "v"}, def, "ERR command LPUSH is not supported by the quorum strategy; use a raft namespace"},
		{[]string{"SET", "k"}, def, "ERR wrong number of arguments for 'set' command"},
		{[]string{"SET", "k", "v", "EX", "10"}, def, "ERR SET options (EX) are not supported"},
		{[]string{"INCR", "k"}, def, "ERR command INCR needs a namespace with resolve=crdt (or lww)"},
		{[]string{"GET", "k"}, consistency.Options{R: 4}, "ERR R: 4 is not in 1..N=3"},
		{[]string{"GET", "k"}, consistency.Options{R: 1, W: 1, Mode: "linearizable"}, "ERR linearizable mode needs R+W>N"},
		{[]string{"GET", "k"}, consistency.Options{Mode: "bogus"}, "ERR unknown quorum mode"},
		{[]string{"GET", "k"}, consistency.Options{Repair: "later"}, "ERR unknown read repair mode"},
	}
	for _, tc := range cases {
		got := c.do("n1", tc.opts, nil, tc.cmd[0], tc.cmd[1:]...)
		if !isErr(got) || !bytes.HasPrefix([]byte(got.Reply.Err.Error()), []byte(tc.want)) {
			t.Errorf("%v: got %s, want prefix %q", tc.cmd, str(got), tc.want)
		}
	}
	r := c.reps["n1"]
	r.Request(c.now, consistency.Request{ID: 99, Txn: &core.Txn{}})
	if rd := r.Ready(); len(rd.Responses) != 1 || !isErr(rd.Responses[0]) {
		t.Errorf("txn: want an error reply, got %+v", rd.Responses)
	}
	for _, bad := range []map[string]string{p("n", "4"), p("r", "0"), p("resolve", "x"), p("read_repair", "x"), p("bogus", "1"), p("timeout", "-1s"), p("resolve", "custom")} {
		if _, err := New(consistency.Config{ID: "n1", Peers: c.ids, Engine: core.NewMemEngine(), Params: bad}); err == nil {
			t.Errorf("params %v accepted", bad)
		}
	}
	if _, err := New(consistency.Config{ID: "n1", Peers: c.ids, Engine: core.NewMemEngine(), Bug: "nope"}); err == nil {
		t.Errorf("unknown bug accepted")
	}
	// Garbage messages are dropped, not fatal.
	r.Receive(c.now, consistency.Message{From: "n2", To: "n1", Body: []byte{200, 1, 2}})
	r.Receive(c.now, consistency.Message{From: "n2", To: "n1", Body: []byte{mPut, 0, 0, 1, 250}})
}

func TestSiblingsAndTokenResolution(t *testing.T) {
	c := newCluster(t, 3, nil, "", 2)
	// Two blind writes (no token) are concurrent: both survive.
	c.do("n1", def, nil, "SET", "k", "a")
	c.do("n2", def, nil, "SET", "k", "b")
	c.run(50 * time.Millisecond)
	got := c.do("n3", def, nil, "GET", "k")
	if vals(got) != "{a,b}" {
		c.fatalf("want siblings {a,b}, got %s", vals(got))
	}
	if d := c.dump("n1")["k"]; d != `siblings["a","b"]` {
		c.fatalf("dump: %s", d)
	}
	// A write carrying the read's token supersedes both.
	if w := c.do("n2", def, got.Token, "SET", "k", "c"); str(w) != "OK" {
		c.fatalf("SET with token: %s", str(w))
	}
	c.run(50 * time.Millisecond)
	if got := c.do("n1", def, nil, "GET", "k"); vals(got) != "c" {
		c.fatalf("after resolving write: %s", vals(got))
	}
	// A token for another key is ignored (it must not supersede k's versions).
	other := c.do("n1", def, nil, "GET", "zz")
	c.do("n1", def, other.Token, "SET", "k", "d")
	c.run(50 * time.Millisecond)
	if got := c.do("n3", consistency.Options{R: 3}, nil, "GET", "k"); vals(got) != "{c,d}" {
		c.fatalf("token of another key superseded k: %s", vals(got))
	}
	// A DEL with the token removes both; a GET then sees nothing.
	got = c.do("n3", def, nil, "GET", "k")
	if d := c.do("n3", def, got.Token, "DEL", "k"); str(d) != "1" {
		c.fatalf("DEL: %s", str(d))
	}
	if got := c.do("n2", def, nil, "GET", "k"); str(got) != "(nil)" {
		c.fatalf("after DEL: %s", vals(got))
	}
	// Chained writes with the write's own token do not pile up siblings.
	tok := []byte(nil)
	for i := 0; i < 20; i++ {
		w := c.do("n1", def, tok, "SET", "chain", fmt.Sprint(i))
		tok = w.Token
	}
	if got := c.do("n2", consistency.Options{R: 3}, nil, "GET", "chain"); vals(got) != "19" {
		c.fatalf("chained writes: %s", vals(got))
	}
}

func TestSiblingCap(t *testing.T) {
	c := newCluster(t, 3, p("max_siblings", "3"), "", 3)
	for i := 0; i < 3; i++ {
		if w := c.do("n1", def, nil, "SET", "k", fmt.Sprint(i)); str(w) != "OK" {
			c.fatalf("SET %d: %s", i, str(w))
		}
	}
	w := c.do("n1", def, nil, "SET", "k", "x")
	if !isErr(w) || w.Reply.Err.Code != CodeSiblings {
		c.fatalf("4th concurrent write: want SIBLINGS error, got %s", str(w))
	}
	got := c.do("n1", def, nil, "GET", "k")
	if w := c.do("n1", def, got.Token, "SET", "k", "x"); str(w) != "OK" {
		c.fatalf("resolving write: %s", str(w))
	}
}

func TestLWW(t *testing.T) {
	c := newCluster(t, 3, p("resolve", "lww"), "", 4)
	c.partition([]nodeID{"n1"}, []nodeID{"n2", "n3"})
	c.do("n1", consistency.Options{W: 1}, nil, "SET", "k", "first")
	c.run(5 * time.Millisecond)
	c.do("n2", consistency.Options{W: 1}, nil, "SET", "k", "second")
	c.heal()
	c.run(2 * time.Second)
	for _, id := range c.ids {
		if d := c.dump(id)["k"]; d != `"second"` {
			c.fatalf("%s: %s, want the later write", id, d)
		}
	}
}

// With a node's clock far ahead, LWW on the HLC still lets a write that
// follows (at the same replica) win; the lww-no-clock bug loses it.
func TestLWWSkewAndBug(t *testing.T) {
	for _, bug := range []string{"", BugLWWNoClock} {
		c := newCluster(t, 3, p("resolve", "lww", "n", "3", "w", "3", "r", "3"), bug, 5)
		c.skew["n1"] = 10 * time.Second
		c.do("n1", def, nil, "SET", "k", "old")
		c.do("n2", def, nil, "SET", "k", "new")
		got := str(c.do("n3", def, nil, "GET", "k"))
		if bug == "" && got != "new" {
			c.fatalf("correct LWW: got %s, want new", got)
		}
		if bug != "" && got != "old" {
			c.fatalf("%s: the later write should have been lost, got %s", bug, got)
		}
	}
}

func TestCRDTs(t *testing.T) {
	c := newCluster(t, 5, p("resolve", "crdt"), "", 6)
	c.partition([]nodeID{"n1", "n2"}, []nodeID{"n3", "n4", "n5"})
	one := consistency.Options{R: 1, W: 1}
	for i := 0; i < 5; i++ {
		for _, id := range c.ids {
			if w := c.do(id, one, nil, "INCRBY", "cnt", "2"); isErr(w) {
				// A side without an owner of cnt cannot take the write.
				continue
			}
		}
	}
	c.run(3 * time.Second) // forget who was reachable before the partition
	for _, w := range [][]string{{"n1", "SADD", "s", "a", "b"}, {"n4", "SADD", "s", "c"},
		{"n1", "HSET", "h", "f", "1", "g", "1"}, {"n4", "HSET", "h", "g", "2"}} {
		if got := c.do(nodeID(w[0]), one, nil, w[1], w[2:]...); isErr(got) {
			c.fatalf("%v: %s", w, str(got))
		}
	}
	c.heal()
	c.run(3 * time.Second)
	// Concurrent remove and add of the same member: add wins.
	c.do("n2", consistency.Options{R: 3, W: 3}, nil, "SADD", "s2", "x")
	c.partition([]nodeID{"n1", "n2"}, []nodeID{"n3", "n4", "n5"})
	c.run(3 * time.Second)
	if got := str(c.do("n1", one, nil, "SREM", "s2", "x")); got != "1" {
		c.fatalf("SREM: %s", got)
	}
	if got := str(c.do("n4", one, nil, "SADD", "s2", "x")); got != "0" { // n5 still sees x
		c.fatalf("SADD: %s", got)
	}
	c.heal()
	c.run(3 * time.Second)
	if d := c.divergence(); d != "" {
		c.fatalf("diverged: %s", d)
	}
	all := consistency.Options{R: ALL}
	total := 0
	for _, id := range c.ids {
		total += int(c.rep(id).objCounter("cnt"))
	}
	if got := str(c.do("n5", all, nil, "GET", "cnt")); got == "0" {
		c.fatalf("counter lost increments: %s", got)
	}
	if got := str(c.do("n5", all, nil, "SMEMBERS", "s")); got != "[a,b,c]" {
		c.fatalf("set: %s", got)
	}
	if got := str(c.do("n5", all, nil, "SMEMBERS", "s2")); got != "[x]" {
		c.fatalf("add-wins: %s", got)
	}
	if got := str(c.do("n2", all, nil, "HGETALL", "h")); got != "[f,1,g,2]" {
		c.fatalf("map: %s", got)
	}
	if got := c.do("n2", all, nil, "GET", "s"); !isErr(got) || got.Reply.Err.Code != core.CodeWrongType {
		c.fatalf("GET of a set: %s", str(got))
	}
	if got := str(c.do("n3", all, nil, "SREM", "s", "a")); got != "1" {
		c.fatalf("SREM: %s", got)
	}
	if got := str(c.do("n3", all, nil, "HDEL", "h", "f")); got != "1" {
		c.fatalf("HDEL: %s", got)
	}
	if got := str(c.do("n1", all, nil, "HGET", "h", "f")); got != "(nil)" {
		c.fatalf("HGET after HDEL: %s", got)
	}
}

// Every acknowledged increment counts once all replicas converge.
func TestCounterNoLostIncrements(t *testing.T) {
	c := newCluster(t, 3, p("resolve", "crdt"), "", 7)
	acked := 0
	for i := 0; i < 30; i++ {
		if i%10 == 0 {
			c.isolate(c.ids[(i/10)%3])
		}
		if w := c.do(c.ids[i%3], consistency.Options{W: 1}, nil, "INCR", "cnt"); !isErr(w) {
			acked++
		}
		if i%10 == 9 {
			c.heal()
		}
	}
	c.heal()
	c.run(3 * time.Second)
	if d := c.divergence(); d != "" {
		c.fatalf("diverged: %s", d)
	}
	if got := c.dump("n1")["cnt"]; got != fmt.Sprintf("counter:%d", acked) {
		c.fatalf("counter %s, want %d acknowledged increments", got, acked)
	}
}

func (r *Replica) objCounter(k string) int64 {
	if e := r.objs[k]; e != nil && e.obj.Kind == KindCounter {
		return e.obj.counter()
	}
	return 0
}

func TestBlindDelete(t *testing.T) {
	c := newCluster(t, 3, nil, "", 8)
	c.do("n1", def, nil, "SET", "k", "a")
	c.do("n2", def, nil, "SET", "k", "b")
	c.run(50 * time.Millisecond)
	if d := c.do("n3", def, nil, "DEL", "k"); str(d) != "1" {
		c.fatalf("DEL: %s", str(d))
	}
	if got := c.do("n1", consistency.Options{R: 3}, nil, "GET", "k"); str(got) != "(nil)" {
		c.fatalf("after a DEL without token: %s", vals(got))
	}
}

// Under lww, sets are whole-object last-write-wins: a concurrent SADD on
// the other side of a partition is lost (what crdt mode exists to avoid).
func TestLWWSetLosesConcurrentAdds(t *testing.T) {
	for _, mode := range []string{ResolveLWW, ResolveCRDT} {
		c := newCluster(t, 3, p("resolve", mode), "", 9)
		c.partition([]nodeID{"n1"}, []nodeID{"n2", "n3"})
		one := consistency.Options{W: 1}
		c.do("n1", one, nil, "SADD", "s", "a")
		c.run(5 * time.Millisecond)
		c.do("n2", one, nil, "SADD", "s", "b")
		c.heal()
		c.run(3 * time.Second)
		if d := c.divergence(); d != "" {
			c.fatalf("%s: diverged: %s", mode, d)
		}
		got := c.dump("n1")["s"]
		if mode == ResolveCRDT && got != `set{"a","b"}` {
			c.fatalf("crdt lost an add: %s", got)
		}
		if mode == ResolveLWW && got != `set{"b"}` {
			c.fatalf("lww: want the later copy only, got %s", got)
		}
	}
}

// Same seed, same inputs: byte-identical outputs (message order included).
func TestDeterministic(t *testing.T) {
	run := func() uint64 {
		c := newCluster(t, 5, p("aae_interval", "50ms", "resolve", "crdt", "read_repair", "async", "w", "1"), "", 42)
		c.dropP = 0.05
		c.skew["n2"] = 300 * time.Millisecond
		for i := 0; i < 60; i++ {
			at := c.ids[i%5]
			switch i % 4 {
			case 0:
				c.submit(at, core.Cmd("SADD", fmt.Sprint("s", i%7), fmt.Sprint(i)), def, nil)
			case 1:
				c.submit(at, core.Cmd("SMEMBERS", fmt.Sprint("s", i%7)), consistency.Options{R: 3}, nil)
			case 2:
				c.submit(at, core.Cmd("INCR", "n"), def, nil)
			default:
				if i%12 == 3 {
					c.isolate(at)
				} else {
					c.heal()
				}
			}
			c.run(7 * time.Millisecond)
		}
		c.heal()
		c.run(2 * time.Second)
		// Two stale owners repaired at once (message order must not
		// depend on map iteration).
		for i := 0; i < 10; i++ {
			k := fmt.Sprint("d", i)
			own := c.owners(k)
			c.isolate(own[0])
			c.submit(own[0], core.Cmd("SADD", k, "x"), consistency.Options{W: 1}, nil)
			c.run(5 * time.Millisecond)
			c.heal()
			c.submit(own[0], core.Cmd("SMEMBERS", k), consistency.Options{R: 3}, nil)
			c.run(20 * time.Millisecond)
		}
		return c.traceHash()
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("seed 42: two runs differ: %x vs %x", a, b)
	}
}

// Corrupted or truncated messages are dropped without panicking.
func TestCorruptMessages(t *testing.T) {
	c := newCluster(t, 3, p("resolve", "crdt", "aae_interval", "20ms"), "", 10)
	var bodies []consistency.Message
	for i := 0; i < 20; i++ {
		c.do(c.ids[i%3], def, nil, "SADD", "s", fmt.Sprint(i))
		c.do(c.ids[i%3], def, nil, "INCR", "n")
		c.do(c.ids[i%3], def, nil, "HSET", "h", "f", fmt.Sprint(i))
	}
	c.run(100 * time.Millisecond)
	for _, f := range c.queue {
		bodies = append(bodies, f.m)
	}
	// Capture a fresh batch of every kind by running with a recording hook.
	for _, id := range c.ids {
		c.reps[id].Tick(c.local(id).Add(time.Hour))
		bodies = append(bodies, c.reps[id].Ready().Messages...)
	}
	if len(bodies) == 0 {
		t.Fatal("no messages captured")
	}
	rnd := c.rnd
	r := c.reps["n1"]
	for i := 0; i < 5000; i++ {
		m := bodies[rnd.IntN(len(bodies))]
		b := append([]byte(nil), m.Body...)
		switch rnd.IntN(3) {
		case 0:
			b = b[:rnd.IntN(len(b)+1)]
		case 1:
			for j := 0; j < 1+rnd.IntN(4); j++ {
				if len(b) > 0 {
					b[rnd.IntN(len(b))] = byte(rnd.IntN(256))
				}
			}
		default:
			b = append(b, byte(rnd.IntN(256)))
		}
		r.Receive(c.now, consistency.Message{From: m.From, To: "n1", Body: b})
		r.Ready()
	}
	if _, err := r.Dump(c.now); err != nil {
		t.Fatal(err)
	}
}
