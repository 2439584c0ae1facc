package primarybackup

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// cluster is a minimal synchronous driver: messages are delivered in FIFO
// order by step, engines synced when Ready asks.
type cluster struct {
	t       *testing.T
	peers   []consistency.NodeID
	engines map[consistency.NodeID]*core.MemEngine
	reps    map[consistency.NodeID]*Replica
	inbox   []consistency.Message
	replies map[uint64]core.Reply
	now     time.Time
	nextID  uint64
	bug     string
	dup     bool // deliver every message twice
	// sent keeps every message body sent with a copy of its bytes at
	// sending: a delivered body is immutable (consistency.Message) and
	// backups keep slices of it, so settle checks that none changed.
	sent []sentBody
}

type sentBody struct {
	body []byte
	at   string
}

func newCluster(t *testing.T, n int, bug string) *cluster {
	c := &cluster{t: t, engines: map[consistency.NodeID]*core.MemEngine{}, reps: map[consistency.NodeID]*Replica{},
		replies: map[uint64]core.Reply{}, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), bug: bug}
	for i := 0; i < n; i++ {
		c.peers = append(c.peers, consistency.NodeID([]string{"n1", "n2", "n3", "n4", "n5"}[i]))
	}
	for _, p := range c.peers {
		c.engines[p] = core.NewMemEngine()
		c.start(p)
	}
	return c
}

func (c *cluster) start(p consistency.NodeID) {
	r, err := New(consistency.Config{ID: p, Peers: c.peers, Engine: c.engines[p], Rand: rand.New(rand.NewPCG(1, 2)), Bug: c.bug})
	if err != nil {
		c.t.Fatal(err)
	}
	c.reps[p] = r
	c.collect(p)
}

func (c *cluster) crash(p consistency.NodeID) {
	delete(c.reps, p)
	c.engines[p] = c.engines[p].SyncedClone()
}

func (c *cluster) collect(p consistency.NodeID) {
	rd := c.reps[p].Ready()
	if rd.Sync {
		if err := c.engines[p].Sync(); err != nil {
			c.t.Fatal(err)
		}
	}
	for _, m := range rd.Messages {
		c.sent = append(c.sent, sentBody{body: m.Body, at: string(m.Body)})
		c.inbox = append(c.inbox, m)
		if c.dup {
			c.inbox = append(c.inbox, m)
		}
	}
	for _, r := range rd.Responses {
		c.replies[r.ID] = r.Reply
	}
}

// settle delivers messages and ticks until nothing is in flight.
func (c *cluster) settle() {
	for round := 0; round < 50; round++ {
		for len(c.inbox) > 0 {
			m := c.inbox[0]
			c.inbox = c.inbox[1:]
			if r, ok := c.reps[m.To]; ok {
				r.Receive(c.now, m)
				c.collect(m.To)
			}
		}
		c.now = c.now.Add(25 * time.Millisecond)
		for _, p := range c.peers {
			if r, ok := c.reps[p]; ok {
				r.Tick(c.now)
				c.collect(p)
			}
		}
	}
	for i, b := range c.sent {
		if string(b.body) != b.at {
			c.t.Fatalf("message body %d changed after it was sent: a receiver keeps slices of it", i)
		}
	}
}

func (c *cluster) do(p consistency.NodeID, cmd core.Command) (uint64, bool) {
	c.nextID++
	id := c.nextID
	c.reps[p].Request(c.now, consistency.Request{ID: id, Cmd: &cmd})
	c.collect(p)
	_, answered := c.replies[id]
	return id, answered
}

func TestReplicateAndRead(t *testing.T) {
	c := newCluster(t, 3, "")
	c.settle()
	id, answered := c.do("n1", core.Cmd("SET", "k", "v1"))
	if answered {
		t.Fatal("primary answered a write before its backups acknowledged it")
	}
	c.settle()
	if r := c.replies[id]; r.IsError() || string(r.Str) != "OK" {
		t.Fatalf("SET reply %+v", r)
	}
	id, _ = c.do("n1", core.Cmd("GET", "k"))
	if r := c.replies[id]; string(r.Str) != "v1" {
		t.Fatalf("GET at primary = %+v", r)
	}
	id, _ = c.do("n2", core.Cmd("GET", "k"))
	if r := c.replies[id]; !r.IsError() || r.Err.Code != CodeMoved || r.Err.Msg != "n1" {
		t.Fatalf("GET at backup = %+v, want MOVED n1", r)
	}
	want, _ := c.reps["n1"].Dump(c.now)
	for _, p := range c.peers {
		got, err := c.reps[p].Dump(c.now)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s dump %v (%v), want %v", p, got, err, want)
		}
	}
	if len(want) != 1 {
		t.Errorf("dump has metadata or misses k: %v", want)
	}
}

func TestDuplicatesAppliedOnce(t *testing.T) {
	c := newCluster(t, 3, "")
	c.dup = true
	c.settle()
	for i := 0; i < 20; i++ {
		c.do("n1", core.Cmd("INCRBY", "n", "1"))
	}
	c.settle()
	for _, p := range c.peers {
		d, _ := c.reps[p].Dump(c.now)
		if d["n"] != c.mustDump("n1")["n"] {
			t.Errorf("%s: n = %q, primary %q", p, d["n"], c.mustDump("n1")["n"])
		}
	}
	id, _ := c.do("n1", core.Cmd("GET", "n"))
	if string(c.replies[id].Str) != "20" {
		t.Errorf("20 increments gave %q", c.replies[id].Str)
	}
}

func (c *cluster) mustDump(p consistency.NodeID) map[string]string {
	d, err := c.reps[p].Dump(c.now)
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	for _, tc := range []struct {
		bug      string
		survives bool
	}{{"", true}, {BugAckBeforeReplicate, false}} {
		t.Run("bug="+tc.bug, func(t *testing.T) {
			c := newCluster(t, 3, tc.bug)
			c.settle()
			id, _ := c.do("n1", core.Cmd("SET", "k", "v1"))
			if tc.bug != "" {
				// The broken primary answers at once; crash it before
				// anything is delivered.
				if _, ok := c.replies[id]; !ok {
					t.Fatal("ack-before-replicate did not answer at once")
				}
				c.inbox = nil
			} else {
				c.settle()
			}
			if r := c.replies[id]; r.IsError() {
				t.Fatalf("SET failed: %+v", r)
			}
			c.crash("n1")
			c.start("n1")
			c.settle()
			got, _ := c.do("n1", core.Cmd("GET", "k"))
			has := string(c.replies[got].Str) == "v1"
			if has != tc.survives {
				t.Errorf("acknowledged write after primary crash: present=%v, want %v", has, tc.survives)
			}
		})
	}
}

func TestBackupCatchesUpAfterCrash(t *testing.T) {
	c := newCluster(t, 3, "")
	c.settle()
	c.crash("n3")
	var ids []uint64
	for i := 0; i < 5; i++ {
		id, _ := c.do("n1", core.Cmd("SET", "k"+string(rune('0'+i)), "v"))
		ids = append(ids, id)
	}
	c.settle()
	if _, ok := c.replies[ids[0]]; ok {
		t.Fatal("ack=all answered with a backup down")
	}
	c.start("n3")
	c.settle()
	for _, id := range ids {
		if r, ok := c.replies[id]; !ok || r.IsError() {
			t.Fatalf("write %d not answered after the backup returned: %+v", id, r)
		}
	}
	if !reflect.DeepEqual(c.mustDump("n3"), c.mustDump("n1")) {
		t.Errorf("n3 did not catch up: %v vs %v", c.mustDump("n3"), c.mustDump("n1"))
	}
	// Every backup holds everything: the log is truncated.
	rep := c.reps["n1"].store.Apply(c.now, core.Cmd("GET", string(logKey(1))))
	if rep.Kind != core.KindNil {
		t.Errorf("log record 1 still present: %+v", rep)
	}
}

func TestStaleBackupReadBugServesLocally(t *testing.T) {
	c := newCluster(t, 3, BugStaleBackupRead)
	c.settle()
	id, _ := c.do("n2", core.Cmd("GET", "k"))
	if r, ok := c.replies[id]; !ok || r.IsError() {
		t.Fatalf("stale-backup-read backup did not serve the read: %+v", r)
	}
}

func TestBadConfig(t *testing.T) {
	e := core.NewMemEngine()
	for _, cfg := range []consistency.Config{
		{ID: "x", Peers: []consistency.NodeID{"n1"}, Engine: e},
		{ID: "n1", Peers: []consistency.NodeID{"n1"}, Engine: e, Bug: "nope"},
		{ID: "n1", Peers: []consistency.NodeID{"n1"}, Engine: e, Params: map[string]string{"ack": "some"}},
		{ID: "n1", Peers: []consistency.NodeID{"n1"}, Engine: e, Params: map[string]string{"zzz": "1"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

// TestArenaKeepsBodiesApart: bodies made from one arena never overlap,
// whether they fill their room, stay under it, or outgrow it.
func TestArenaKeepsBodiesApart(t *testing.T) {
	var a arena
	var made, want [][]byte
	for i := 0; i < 3000; i++ {
		n := 1 + i%700
		fill := n - i%3 // under, at, or (below) over the room
		if i%5 == 0 {
			fill = n + 3 // outgrows its room: its own array
		}
		b := a.room(n)
		for j := 0; j < fill; j++ {
			b = append(b, byte(i+j))
		}
		b = a.keep(b)
		if len(b) != fill || cap(b) != fill {
			t.Fatalf("body %d: len %d cap %d, want %d", i, len(b), cap(b), fill)
		}
		made = append(made, b)
		want = append(want, append([]byte(nil), b...))
	}
	for i := range made {
		if !bytes.Equal(made[i], want[i]) {
			t.Fatalf("body %d was overwritten", i)
		}
	}
}

// TestBackupsMirrorPrimary: backups apply the primary's effects, so every
// user key ends with the primary's value, version and expiry (versions
// come from the store-wide counter, which the primary's log records also
// advance: a backup that re-ran the commands would give a key created after
// the first write another version). Failed writes replicate nothing.
func TestBackupsMirrorPrimary(t *testing.T) {
	c := newCluster(t, 3, "")
	c.settle()
	for _, cmd := range []core.Command{
		core.Cmd("SET", "a", "1"), core.Cmd("SADD", "s", "x", "y"), core.Cmd("INCR", "n"),
		core.Cmd("SET", "t", "v", "PX", "60000"), core.Cmd("SREM", "s", "x"), core.Cmd("INCR", "a"),
		core.Cmd("SADD", "a", "wrongtype"), core.Cmd("DEL", "n"), core.Cmd("SET", "b", "2"),
	} {
		c.do("n1", cmd)
		c.settle()
	}
	c.nextID++
	txn := core.Txn{Conds: []core.Condition{{Key: []byte("b"), Kind: core.CondValue, Value: []byte("2")}},
		Cmds: []core.Command{core.Cmd("SET", "b", "3"), core.Cmd("SADD", "s2", "z")}}
	c.reps["n1"].Request(c.now, consistency.Request{ID: c.nextID, Txn: &txn})
	c.collect("n1")
	c.settle()
	if r := c.replies[c.nextID]; r.IsError() {
		t.Fatalf("txn reply %+v", r)
	}
	for _, k := range []string{"a", "s", "n", "t", "b", "s2"} {
		var want string
		for _, p := range c.peers {
			st := c.reps[p].store
			got := ""
			for _, q := range []string{"VERSION", "PTTL", "TYPE", "GET", "SMEMBERS"} {
				got += fmt.Sprintf("%s=%+v ", q, st.Apply(c.now, core.Cmd(q, k)))
			}
			if p == "n1" {
				want = got
				continue
			}
			if got != want {
				t.Errorf("key %s at %s: %s, at the primary %s", k, p, got, want)
			}
		}
	}
}

// TestEntryCodec: an entry decodes to what was encoded; a truncated one is
// an error, never a panic.
func TestEntryCodec(t *testing.T) {
	en := entry{Seq: 7, Now: 1234567, Fx: core.Effects{Counter: 9, Keys: -1, Expired: 2, Warns: 1,
		Writes: []core.EffectWrite{{Key: []byte("dk"), Value: []byte("rec")}, {Key: []byte("xk"), Delete: true}, {Key: []byte("dz"), Value: []byte{}}}}}
	raw := appendEntry(nil, en)
	var got entry
	if err := parseRaw(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Seq != en.Seq || got.Now != en.Now || got.Fx.Counter != 9 || got.Fx.Keys != -1 || got.Fx.Expired != 2 || got.Fx.Warns != 1 || len(got.Fx.Writes) != 3 {
		t.Fatalf("decoded %+v", got)
	}
	for i, w := range got.Fx.Writes {
		if !bytes.Equal(w.Key, en.Fx.Writes[i].Key) || !bytes.Equal(w.Value, en.Fx.Writes[i].Value) || w.Delete != en.Fx.Writes[i].Delete {
			t.Fatalf("write %d: %+v, want %+v", i, w, en.Fx.Writes[i])
		}
	}
	if len(raw) > entryBound(en) {
		t.Fatalf("entry of %d bytes above its bound %d", len(raw), entryBound(en))
	}
	for n := 0; n < len(raw); n++ {
		if err := parseRaw(raw[:n], &got); err == nil {
			t.Fatalf("entry truncated to %d of %d bytes decoded without an error", n, len(raw))
		}
	}
}
