package nodes

import (
	"fmt"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency/quorum"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// TestClusterPeerWake (issue 9): after a member restarts, a quorum read
// that needs it must not wait out the other members' reconnect backoff.
// The senders' backoff is a minute here (1 s request timeout): n1's
// sender to the stopped n2 fails and sleeps; when n2 is back, gossip's
// alive verdict (and any message from n2) wakes it, so an R=ALL read at
// n1 succeeds within three 1 s attempts. Without the wake-up the sender
// sleeps for a uniform draw in [0, 1 min) and the reads time out (checked
// by hand: 3 of 3 runs timed out with both Wake calls removed from
// nodes/cluster.go, the sender still asleep with 1 delivery).
func TestClusterPeerWake(t *testing.T) {
	if testing.Short() {
		t.Skip("about 5 s")
	}
	tc := newTestClusterWith(t, true, func(_ int, c *ClusterConfig) {
		c.PeerMinBackoff, c.PeerMaxBackoff = time.Minute, time.Minute
	}, "n1", "n2", "n3")
	all := map[string]string{"n1": "alive", "n2": "alive", "n3": "alive"}
	for i := range 3 {
		tc.waitMembers(i, all)
	}
	const ns = "kv"
	tc.createAt(0, ns, "quorum", map[string]string{"timeout": "1s", "read_repair": "off"})
	tc.waitNamespace(ns)
	if r, err := tc.call(0, clusterOp{ns: ns}, "SET", "k", "v"); err != nil || replyStr(r) != "OK" {
		t.Fatalf("SET: %v %v", r, err)
	}
	tc.stop(1)
	tc.waitMembers(0, map[string]string{"n2": "down"})
	// Writes at n1 send puts to n2: the first fails on the connection n2
	// closed, the next ones dial, fail, and start a backoff of up to a
	// minute (two send errors: at least one failed dial).
	snd := tc.nodes[0].c.sender("n2")
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; snd.Stats().SendErrors < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("n1's sender to the stopped n2 did not fail twice: %+v", snd.Stats())
		}
		if r, err := tc.call(0, clusterOp{ns: ns}, "SET", fmt.Sprintf("d%d", i), "v"); err != nil || replyStr(r) != "OK" {
			t.Fatalf("SET with n2 down: %v %v", r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tc.start(1)
	tc.waitMembers(0, all)
	var last string
	for attempt := 1; attempt <= 3; attempt++ {
		r, err := tc.call(0, clusterOp{ns: ns, r: int32(quorum.ALL)}, "GET", "k")
		if err == nil && len(r.Replies) == 1 && r.Replies[0].Kind != gen.ReplyKind_ERROR && replyStr(r) == "v" {
			t.Logf("R=ALL read after n2 restarted succeeded at attempt %d; n1 sender to n2: %+v", attempt, snd.Stats())
			return
		}
		last = replyErr(r, err)
	}
	t.Fatalf("R=ALL read at n1 failed 3 times after n2 restarted (n1's sender to n2: %+v): %s", snd.Stats(), last)
}

func replyErr(r *gen.ExecuteResponse, err error) string {
	if err != nil {
		return err.Error()
	}
	if r != nil && len(r.Replies) == 1 && r.Replies[0].Kind == gen.ReplyKind_ERROR {
		return r.Replies[0].GetError().GetMessage()
	}
	return replyStr(r)
}
