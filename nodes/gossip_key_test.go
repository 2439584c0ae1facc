package nodes

import (
	"encoding/base64"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/dialkv/dialkv/nodes/security"
)

// TestGossipKey: members sharing a --gossip-key-file see each other; a
// member with another key, and one without a key, cannot join them, and
// neither shows up in their member list.
func TestGossipKey(t *testing.T) {
	key := func(fill byte) []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = fill + byte(i)
		}
		// Through the flag's parser, as dialkv node reads the file.
		k, err := security.ParseGossipKey(base64.StdEncoding.EncodeToString(b))
		if err != nil {
			t.Fatal(err)
		}
		return []byte(k.Reveal())
	}
	good, wrong := key(1), key(100)
	addrs := freeAddrs(t, 4)
	start := func(id, addr string, k []byte, join ...string) *gossip {
		t.Helper()
		g, err := startGossip(id, "sec", gossipMeta{}, nil, GossipOptions{Listen: addr, Join: join, SecretKey: k,
			ProbeInterval: 100 * time.Millisecond, Rejoin: 200 * time.Millisecond}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("start gossip %s: %v", id, err)
		}
		t.Cleanup(func() { g.close() })
		return g
	}
	names := func(g *gossip) []string {
		var s []string
		for _, m := range g.ml.Members() {
			s = append(s, m.Name)
		}
		slices.Sort(s)
		return s
	}
	g1 := start("n1", addrs[0], good)
	g2 := start("n2", addrs[1], good, addrs[0])
	for deadline := time.Now().Add(10 * time.Second); !slices.Equal(names(g1), []string{"n1", "n2"}); {
		if time.Now().After(deadline) {
			t.Fatalf("n1 sees %v, want n1 and n2 (same key)", names(g1))
		}
		time.Sleep(20 * time.Millisecond)
	}
	intruders := map[string]*gossip{
		"another key": start("x1", addrs[2], wrong, addrs[0]),
		"no key":      start("x2", addrs[3], nil, addrs[0]),
	}
	for name, g := range intruders {
		if n, err := g.ml.Join([]string{addrs[0], addrs[1]}); err == nil || n != 0 {
			t.Errorf("%s: join = %d members, %v; want refused", name, n, err)
		}
	}
	// Both intruders keep retrying (Rejoin) and gossiping for a while.
	time.Sleep(time.Second)
	for _, g := range []*gossip{g1, g2} {
		if got := names(g); !slices.Equal(got, []string{"n1", "n2"}) {
			t.Fatalf("%s sees %v, want only n1 and n2", g.self, got)
		}
	}
	for name, g := range intruders {
		if got := names(g); len(got) != 1 {
			t.Fatalf("%s: intruder sees %v", name, got)
		}
	}
}
