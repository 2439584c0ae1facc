package client

import (
	"fmt"
	"testing"

	"github.com/dialkv/dialkv/core"
)

func TestHashTag(t *testing.T) {
	for _, tt := range []struct{ key, want string }{
		{"user42", "user42"},
		{"{user42}:cart", "user42"},
		{"x{a}y{b}", "a"},
		{"{}:k", "{}:k"},
		{"{open", "{open"},
		{"", ""},
	} {
		if got := string(core.HashTag([]byte(tt.key))); got != tt.want {
			t.Errorf("HashTag(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
}

func TestRedirectShard(t *testing.T) {
	for _, tt := range []struct {
		msg  string
		s, n int
		ok   bool
	}{
		{"MOVED redirect to 127.0.0.1:1: not the leader of shard 2 of 3", 2, 3, true},
		{"MOVED redirect to a: n1 has no replica of shard 0 of 1", 0, 1, true},
		{"MOVED redirect to a: not the leader", 0, 0, false},
		{"shard 3 of 3", 0, 0, false},
		{"shard 0 of 0", 0, 0, false},
		{"shard 1 of 99999999999999999999", 0, 0, false},
	} {
		s, n, ok := redirectShard(tt.msg)
		if s != tt.s || n != tt.n || ok != tt.ok {
			t.Errorf("redirectShard(%q) = %d, %d, %v; want %d, %d, %v", tt.msg, s, n, ok, tt.s, tt.n, tt.ok)
		}
	}
}

// TestRoutes: a redirect naming a shard routes every key of that shard;
// other keys go to the namespace's last redirect target; forgetting an
// address drops only the routes to it.
func TestRoutes(t *testing.T) {
	var r routes
	key := func(s string) []byte { return []byte(s) }
	// Two keys on different shards of 2.
	var k0, k1 string
	for i := 0; k0 == "" || k1 == ""; i++ {
		k := fmt.Sprint("k", i)
		if core.ShardOf(key(k), 2) == 0 && k0 == "" {
			k0 = k
		} else if core.ShardOf(key(k), 2) == 1 && k1 == "" {
			k1 = k
		}
	}
	if got := r.lookup("ns", key(k0)); got != "" {
		t.Fatalf("empty cache: %q", got)
	}
	r.moved("ns", key(k0), "n1", "not the leader of shard 0 of 2")
	if got := r.lookup("ns", key(k1)); got != "n1" {
		t.Fatalf("unknown shard: %q, want the last redirect n1", got)
	}
	r.moved("ns", key(k1), "n2", "not the leader of shard 1 of 2")
	for _, tt := range []struct {
		ns   string
		key  []byte
		want string
	}{
		{"ns", key(k0), "n1"},
		{"ns", key("{" + k0 + "}:x"), "n1"}, // same hash tag, same shard
		{"ns", key(k1), "n2"},
		{"ns", nil, "n2"}, // keyless: last redirect
		{"other", key(k0), ""},
	} {
		if got := r.lookup(tt.ns, tt.key); got != tt.want {
			t.Errorf("lookup(%q, %q) = %q, want %q", tt.ns, tt.key, got, tt.want)
		}
	}
	r.forget("ns", "n2")
	if got := r.lookup("ns", key(k1)); got != "" {
		t.Errorf("after forget: %q", got)
	}
	if got := r.lookup("ns", key(k0)); got != "n1" {
		t.Errorf("forget dropped another route: %q", got)
	}
	// A redirect without shard information still sets the fallback.
	r.moved("plain", key("a"), "n3", "not the leader")
	if got := r.lookup("plain", key("b")); got != "n3" {
		t.Errorf("plain redirect: %q", got)
	}
}
