package client_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
)

// The client's tests run against a real node in-process (a test-only
// dependency on package nodes).
func startNode(t testing.TB, cfg nodes.Config) *nodes.Node {
	t.Helper()
	if cfg.ID == "" {
		cfg.ID = "n1"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Engine == "" {
		cfg.Engine = "memory"
	}
	n, err := nodes.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	return n
}

func newClient(t testing.TB, addrs []string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConvenience(t *testing.T) {
	n := startNode(t, nodes.Config{})
	c := newClient(t, []string{n.Addr()})
	ctx := context.Background()

	v1, err := c.Set(ctx, "k", []byte("v1"))
	if err != nil || v1 == 0 {
		t.Fatalf("Set = %d, %v", v1, err)
	}
	got, err := c.Get(ctx, "k")
	if err != nil || !got.Found || got.String() != "v1" || got.Version != v1 {
		t.Fatalf("Get = %+v, %v (want v1 at version %d)", got, err, v1)
	}
	if got, _ := c.Get(ctx, "missing"); got.Found {
		t.Fatalf("Get(missing) = %+v", got)
	}
	ok, err := c.CAS(ctx, "k", []byte("wrong"), []byte("v2"))
	if err != nil || ok {
		t.Fatalf("CAS with a wrong expectation = %v, %v", ok, err)
	}
	ok, err = c.CAS(ctx, "k", []byte("v1"), []byte("v2"))
	if err != nil || !ok {
		t.Fatalf("CAS = %v, %v", ok, err)
	}
	ok, err = c.CAS(ctx, "fresh", nil, []byte("x"))
	if err != nil || !ok {
		t.Fatalf("CAS on an absent key = %v, %v", ok, err)
	}
	cur, _ := c.Get(ctx, "k")
	_, err = c.CASVersion(ctx, "k", cur.Version+7, []byte("v3"))
	var ce *client.Error
	if !errors.Is(err, client.ErrConditionFailed) || !errors.As(err, &ce) || ce.Version != cur.Version {
		t.Fatalf("CASVersion with a stale version: %v (want CONDFAILED at version %d)", err, cur.Version)
	}
	if _, err := c.CASVersion(ctx, "k", cur.Version, []byte("v3")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Incr(ctx, "ctr", 5); err != nil || n != 5 {
		t.Fatalf("Incr = %d, %v", n, err)
	}
	if _, err := c.Incr(ctx, "k", 1); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("Incr of a non-number: %v", err)
	}
	if _, err := c.SAdd(ctx, "k", "x"); !errors.Is(err, client.ErrWrongType) {
		t.Fatalf("SAdd on a string: %v, want ErrWrongType", err)
	}
	if n, err := c.SAdd(ctx, "s", "a", "b", "a"); err != nil || n != 2 {
		t.Fatalf("SAdd = %d, %v", n, err)
	}
	m, err := c.SMembers(ctx, "s")
	sort.Strings(m)
	if err != nil || strings.Join(m, ",") != "a,b" {
		t.Fatalf("SMembers = %v, %v", m, err)
	}
	if err := c.MSet(ctx, "m1", "x", "m2", "y"); err != nil {
		t.Fatal(err)
	}
	vs, err := c.MGet(ctx, "m1", "nope", "m2")
	if err != nil || len(vs) != 3 || vs[0].String() != "x" || vs[1].Found || vs[2].String() != "y" {
		t.Fatalf("MGet = %+v, %v", vs, err)
	}
	if n, err := c.Del(ctx, "m1", "m2", "nope"); err != nil || n != 2 {
		t.Fatalf("Del = %d, %v", n, err)
	}
	if _, err := c.SetEX(ctx, "ttl", []byte("x"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(120 * time.Millisecond)
	if got, _ := c.Get(ctx, "ttl"); got.Found {
		t.Fatalf("key with a 50 ms TTL still there after 120 ms: %+v", got)
	}
	r, err := c.Do(ctx, "HSET", "h", "f", 1)
	if err != nil || r.Kind != core.KindInt || r.Int != 1 {
		t.Fatalf("Do(HSET) = %+v, %v", r, err)
	}
	if _, err := c.Do(ctx, "NOSUCH"); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("unknown command: %v", err)
	}
	info, err := c.Ping(ctx)
	if err != nil || info.ID != "n1" {
		t.Fatalf("Ping = %+v, %v", info, err)
	}
}

func TestBatchTxnScan(t *testing.T) {
	n := startNode(t, nodes.Config{})
	c := newClient(t, []string{n.Addr()})
	ctx := context.Background()
	b := c.Batch()
	for i := range 50 {
		b.Add("SET", "key:"+string(rune('a'+i%26))+string(rune('a'+i/26)), i)
	}
	b.Add("SADD", "key:aa", "x") // wrong type: an error reply, the rest still runs
	b.Add("GET", "key:ab")
	rs, err := b.Exec(ctx)
	if err != nil || len(rs) != 52 {
		t.Fatalf("batch = %d replies, %v", len(rs), err)
	}
	if !errors.Is(client.ReplyErr(rs[50]), client.ErrWrongType) || string(rs[51].Str) != "26" {
		t.Fatalf("batch tail = %+v / %+v", rs[50], rs[51])
	}
	// Scan pages through every key with the prefix exactly once.
	var keys []string
	req := client.ScanRequest{Prefix: []byte("key:"), Limit: 7}
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("scan does not end")
		}
		p, err := c.Scan(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range p.Keys {
			keys = append(keys, string(k))
			if string(k) == "key:ab" && string(p.Values[i].Str) != "26" {
				t.Fatalf("scan value of key:ab = %+v", p.Values[i])
			}
		}
		if p.Next == nil {
			break
		}
		req.Cursor = p.Next
	}
	if len(keys) != 50 || !sort.StringsAreSorted(keys) {
		t.Fatalf("scan returned %d keys (sorted: %v)", len(keys), sort.StringsAreSorted(keys))
	}
	// Transactions: all or nothing.
	_, err = c.Txn(ctx, []core.Condition{{Key: []byte("key:aa"), Kind: core.CondValue, Value: []byte("nope")}},
		core.Cmd("SET", "key:aa", "changed"))
	if !errors.Is(err, client.ErrConditionFailed) {
		t.Fatalf("txn with a false condition: %v", err)
	}
	out, err := c.Txn(ctx, []core.Condition{{Key: []byte("key:aa"), Kind: core.CondValue, Value: []byte("0")}},
		core.Cmd("SET", "key:aa", "changed"), core.Cmd("INCR", "ctr"))
	if err != nil || len(out) != 2 || out[1].Int != 1 {
		t.Fatalf("txn = %+v, %v", out, err)
	}
}

func TestIndexQuery(t *testing.T) {
	n := startNode(t, nodes.Config{})
	c := newClient(t, []string{n.Addr()})
	ctx := context.Background()
	if _, err := c.Do(ctx, "IDX.CREATE", "byage", "ON", "HASH", "PREFIX", "user:", "FIELD", "age", "TYPE", "number"); err != nil {
		t.Fatal(err)
	}
	ages := map[string]int{"user:ann": 31, "user:bob": 25, "user:cat": 31, "user:dan": 40, "other:eve": 31}
	for k, a := range ages {
		if _, err := c.Do(ctx, "HSET", k, "age", a); err != nil {
			t.Fatal(err)
		}
	}
	p, err := c.QueryIndex(ctx, client.IndexQuery{Index: "byage", Value: []byte("31")})
	if err != nil || len(p.Keys) != 2 || string(p.Keys[0]) != "user:ann" || string(p.Keys[1]) != "user:cat" || p.Next != nil {
		t.Fatalf("age == 31: %q next %q, %v", p.Keys, p.Next, err)
	}
	// A range, one key per page.
	var got []string
	q := client.IndexQuery{Index: "byage", Min: []byte("26"), Max: []byte("+inf"), Limit: 1}
	for pages := 0; pages < 10; pages++ {
		p, err := c.QueryIndex(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range p.Keys {
			got = append(got, string(k))
		}
		if p.Next == nil {
			break
		}
		q.Cursor = p.Next
	}
	if strings.Join(got, ",") != "user:ann,user:cat,user:dan" {
		t.Fatalf("age in [26, +inf) paged: %v", got)
	}
	_, err = c.QueryIndex(ctx, client.IndexQuery{Index: "none", Value: []byte("x")})
	if !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("query of a missing index: %v", err)
	}
}

func TestPubSub(t *testing.T) {
	n := startNode(t, nodes.Config{})
	c := newClient(t, []string{n.Addr()})
	ctx := context.Background()
	sub, err := c.Subscribe(ctx, []string{"ch"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k, err := c.Publish(ctx, "ch", []byte("m1")); err != nil || k != 1 {
		t.Fatalf("Publish = %d, %v", k, err)
	}
	msgs, err := sub.Poll(ctx, 10, time.Second)
	if err != nil || len(msgs) != 1 || string(msgs[0].Payload) != "m1" {
		t.Fatalf("Poll = %+v, %v", msgs, err)
	}
	start := time.Now()
	msgs, err = sub.Poll(ctx, 10, 100*time.Millisecond)
	if err != nil || len(msgs) != 0 || time.Since(start) < 90*time.Millisecond {
		t.Fatalf("empty long poll = %+v, %v after %v", msgs, err, time.Since(start))
	}
	if err := sub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Poll(ctx, 1, 0); !errors.Is(err, client.ErrInvalid) && !strings.Contains(err.Error(), "NOSUBSCRIPTION") {
		t.Fatalf("poll after unsubscribe: %v", err)
	}
}

func TestNamespacesAndOptions(t *testing.T) {
	n := startNode(t, nodes.Config{})
	c := newClient(t, []string{n.Addr()})
	ctx := context.Background()
	if err := c.CreateNamespace(ctx, client.NamespaceSpec{Name: "users", Strategy: "local"}); err != nil {
		t.Fatal(err)
	}
	uctx := client.With(ctx, client.Namespace("users"))
	if _, err := c.Set(uctx, "k", []byte("in-users")); err != nil {
		t.Fatal(err)
	}
	if v, _ := c.Get(ctx, "k"); v.Found {
		t.Fatalf("namespace leak: default/k = %+v", v)
	}
	if v, _ := c.Get(uctx, "k"); v.String() != "in-users" {
		t.Fatalf("users/k = %+v", v)
	}
	if _, err := c.Get(client.With(ctx, client.Namespace("nope")), "k"); err == nil || !strings.Contains(err.Error(), "NONAMESPACE") {
		t.Fatalf("unknown namespace: %v", err)
	}
	list, err := c.ListNamespaces(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListNamespaces = %+v, %v", list, err)
	}
}

// TestRetries: a node that is down at first is reached once it is up
// (connection refused is retried for every operation), and the backoff
// gives up at the context's deadline.
func TestRetries(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	// Breakers off: this test is about retrying until the node comes up
	// (TestBreakerRestart covers the breakers).
	c := newClient(t, []string{addr}, client.WithRetries(50, 5*time.Millisecond, 50*time.Millisecond), client.WithCircuitBreaker(0, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	_, err = c.Incr(ctx, "x", 1)
	cancel()
	if !errors.Is(err, client.ErrConnection) {
		t.Fatalf("with no node: %v, want ErrConnection", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(100 * time.Millisecond)
		startNode(t, nodes.Config{Listen: addr})
	}()
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := c.Incr(ctx, "x", 1)
	wg.Wait()
	if err != nil || v != 1 {
		t.Fatalf("Incr after the node came up = %d, %v", v, err)
	}
}

// TestNoBlindRetry: an INCR whose reply is lost (the connection breaks
// after the request was sent) is not retried — its outcome is unknown —
// while a GET is.
func TestNoBlindRetry(t *testing.T) {
	n := startNode(t, nodes.Config{})
	// A proxy that forwards the first request of each connection and then
	// cuts the connection before any reply returns.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	forwarded := 0
	go func() {
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(cn net.Conn) {
				defer cn.Close()
				up, err := net.Dial("tcp", n.Addr())
				if err != nil {
					return
				}
				defer up.Close()
				buf := make([]byte, 64<<10)
				k, err := cn.Read(buf)
				if err != nil {
					return
				}
				up.Write(buf[:k])
				up.Read(buf) // the node applied it; drop the reply
				mu.Lock()
				forwarded++
				mu.Unlock()
			}(cn)
		}
	}()
	c := newClient(t, []string{ln.Addr().String()}, client.WithRetries(3, time.Millisecond, 5*time.Millisecond))
	ctx := context.Background()
	_, err = c.Incr(ctx, "ctr", 1)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Code != client.CodeConnection || !ce.Sent {
		t.Fatalf("Incr through a reply-dropping proxy: %v, want a CONNECTION error with Sent", err)
	}
	mu.Lock()
	if forwarded != 1 {
		t.Fatalf("INCR was sent %d times, want exactly 1", forwarded)
	}
	forwarded = 0
	mu.Unlock()
	direct := newClient(t, []string{n.Addr()})
	if v, _ := direct.Get(ctx, "ctr"); v.String() != "1" {
		t.Fatalf("ctr = %q, want 1 (applied once)", v.String())
	}
	_, err = c.Get(ctx, "ctr")
	mu.Lock()
	defer mu.Unlock()
	if err == nil || forwarded != 4 {
		t.Fatalf("GET through the proxy: %v after %d attempts, want 4 attempts (1 + 3 retries)", err, forwarded)
	}
}

// TestRecorder: operations are recorded in the checker's format.
func TestRecorder(t *testing.T) {
	n := startNode(t, nodes.Config{})
	var buf bytes.Buffer
	rec := checker.NewRecorder(&buf)
	c := newClient(t, []string{n.Addr()}, client.WithRecorder(rec, 3, time.Now()))
	ctx := context.Background()
	c.Set(ctx, "k", []byte("a"))
	c.Get(ctx, "k")
	c.CAS(ctx, "k", []byte("zz"), []byte("b"))
	c.Incr(ctx, "n", 2)
	c.SAdd(ctx, "s", "e")
	c.SMembers(ctx, "s")
	c.Del(ctx, "k")
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	ops, err := checker.ReadHistory(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var fs []string
	for _, op := range ops {
		fs = append(fs, op.F+":"+string(op.Outcome))
		if op.Client != 3 || (op.Outcome == checker.OK && op.Node != "n1") || op.Complete == nil || *op.Complete < op.Invoke {
			t.Errorf("op %+v: want client 3, node n1 (when ok), complete >= invoke", op)
		}
	}
	want := "put:ok get:ok cas:fail incr:ok sadd:ok smembers:ok delete:ok"
	if got := strings.Join(fs, " "); got != want {
		t.Fatalf("recorded %s\nwant     %s", got, want)
	}
	if ops[1].Value == nil || *ops[1].Value != "a" || ops[3].Int == nil || *ops[3].Int != 2 || len(ops[5].Values) != 1 {
		t.Fatalf("recorded results: %+v", ops)
	}
}
