package raftls

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4/config"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
)

// TestRestartedPeerIsRedialled: a message connection whose peer restarted
// while it was idle (the peer's process closed it: FIN) is dialled again
// by the next SendMessageBatch, so that batch and the next reach the new
// peer and no send fails. Written to the dead connection, the first batch
// was lost and the second failed, tripping Dragonboat's circuit breaker for
// the peer; after a leader's crash that dropped the surviving followers'
// (pre)votes to each other for 0.5–1.8 s (docs/raft.md, "Failover
// outliers"). The idle time is set on the connection, not slept.
//
// Reproduce: go test -count=1 -run TestRestartedPeerIsRedialled ./transport/raftls/
func TestRestartedPeerIsRedialled(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", dir, "--nodes", "n1,n2"}, &out, &errb); code != 0 {
		t.Fatalf("certs: %s", errb.String())
	}
	isNode := func(s string) bool { return s == "n1" || s == "n2" }
	factory := func(t *testing.T, tlsMode bool, node string) Factory {
		if !tlsMode {
			return Factory{}
		}
		files := security.TLSFiles{Cert: filepath.Join(dir, "node-"+node+".crt"), Key: filepath.Join(dir, "node-"+node+".key"), CA: filepath.Join(dir, "ca.crt")}
		srv, cli, err := security.RaftConfigs(files, isNode, nil)
		if err != nil {
			t.Fatal(err)
		}
		return Factory{Server: srv, Client: cli}
	}
	start := func(t *testing.T, f Factory, addr string, r *received) *Transport {
		tr := f.Create(config.NodeHostConfig{RaftAddress: addr}, r.batch, r.chunk).(*Transport)
		if err := tr.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain", false}, {"tls", true}} {
		t.Run(tc.name, func(t *testing.T) {
			n1 := start(t, factory(t, tc.tls, "n1"), "127.0.0.1:0", &received{})
			var r1 received
			n2 := start(t, factory(t, tc.tls, "n2"), "127.0.0.1:0", &r1)
			addr := n2.ln.Addr().String()
			c := connectAndSend(t, n1, addr, &r1)

			// The peer restarts on the same address.
			n2.Close()
			var r2 received
			start(t, factory(t, tc.tls, "n2"), addr, &r2)
			waitHungUp(t, c)
			c.lastWrite = time.Now().Add(-redialIdleAfter) // idle since
			for did := uint64(2); did <= 3; did++ {
				if err := c.SendMessageBatch(pb.MessageBatch{DeploymentId: did}); err != nil {
					t.Fatalf("batch %d to the restarted peer: %v", did, err)
				}
			}
			r2.waitBatch(t, 2)
			r2.waitBatch(t, 3)
		})
	}
}

// TestBusyConnectionIsNotChecked: a connection written to within
// redialIdleAfter is written to without the hang-up check (no poll per
// batch on busy connections), so a write to a peer that just went away
// fails as before (the caller's breaker decides).
func TestBusyConnectionIsNotChecked(t *testing.T) {
	var r1 received
	n1, n2 := startPlain(t, &received{}), startPlain(t, &r1)
	c := connectAndSend(t, n1, n2.ln.Addr().String(), &r1)
	old := c.c
	n2.Close()
	waitHungUp(t, c)
	c.lastWrite = time.Now()
	c.SendMessageBatch(pb.MessageBatch{DeploymentId: 2}) // may succeed locally
	if c.c != old {
		t.Fatal("a connection written to just now was dialled again")
	}
}

// connectAndSend opens n1's message connection to addr and sends a first
// batch (deployment 1), waiting until r received it; the connection is
// closed when the test ends.
func connectAndSend(t *testing.T, n1 *Transport, addr string, r *received) *conn {
	t.Helper()
	ic, err := n1.GetConnection(testCtx(t), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ic.Close() })
	c := ic.(*conn)
	if err := c.SendMessageBatch(pb.MessageBatch{DeploymentId: 1}); err != nil {
		t.Fatal(err)
	}
	r.waitBatch(t, 1)
	return c
}

// waitHungUp waits (up to 5 s) until c's peer has closed it.
func waitHungUp(t *testing.T, c *conn) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !transport.PeerHungUp(c.c); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the peer's close did not arrive")
		}
	}
}
