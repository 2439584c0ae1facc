package nodes

import (
	"io"
	"log/slog"
	"testing"
)

// TestReplicaRandDiffersPerIncarnation: a node that restarts must not
// draw the same replica randomness (request ids) as in its previous life,
// or peers drop its first requests as duplicates of the old ones. Two
// clusters built for the same node and data directory stand for two
// lives of one node.
func TestReplicaRandDiffersPerIncarnation(t *testing.T) {
	dir := t.TempDir()
	cc := ClusterConfig{Name: "inc", Peers: []ClusterPeer{{ID: "n1", Client: "127.0.0.1:1", Peer: "127.0.0.1:0"}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	first := func() uint64 {
		c, err := newCluster("n1", cc, dir, false, log)
		if err != nil {
			t.Fatalf("newCluster: %v", err)
		}
		defer c.close()
		return c.replicaRand("ns").Uint64()
	}
	a, b := first(), first()
	if a == b {
		t.Fatalf("two lives of node n1 drew the same first replica random number %#x: request ids would repeat after a restart", a)
	}
}
