package nodes

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// TestClusterBatchOnQuorum: a batch of 200 writes (50 keys, 4 each) on a
// quorum namespace is answered in full, and every key holds its last
// write and nothing else (per-key order, chained tokens).
func TestClusterBatchOnQuorum(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	tc.createAt(0, "kv", "quorum", nil)
	tc.waitNamespace("kv")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := transport.Dial(ctx, tc.peers[0].Client, transport.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var cmds []*gen.Command
	for i := range 200 {
		cmds = append(cmds, cmd("SET", fmt.Sprintf("k%d", i%50), fmt.Sprintf("v%d", i)))
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	resp, err := c.Execute(ctx, clusterOp{ns: "kv"}.opts(), cmds)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range resp.Replies {
		if r.Kind == gen.ReplyKind_ERROR {
			t.Fatalf("SET %d: %s %s", i, r.Error.Code, r.Error.GetMessage())
		}
	}
	for k := range 50 {
		r, err := tc.call(2, clusterOp{ns: "kv", r: 3}, "GET", fmt.Sprintf("k%d", k))
		if want := fmt.Sprintf("v%d", 150+k); err != nil || replyStr(r) != want || len(r.Replies[0].Siblings) > 1 {
			t.Fatalf("GET k%d at n3 (R=3) = %s %v, %v; want only %s", k, replyStr(r), r, err, want)
		}
	}
}
