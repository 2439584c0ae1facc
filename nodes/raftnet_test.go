package nodes

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
)

// raftlsHello is transport/raftls's hello frame: magic "DR", kind 5, an
// empty payload and its CRC-32C (0).
var raftlsHello = []byte{'D', 'R', 5, 0, 0, 0, 0, 0, 0, 0, 0}

// TestRaftTransportParam: a raft namespace without peer TLS runs over
// transport/raftls in plain mode (its Raft address answers the hello
// frame), or over Dragonboat's TCP transport with parameter transport
// dragonboat (the connection is closed at the unknown magic); writes
// commit and read back from every member over either.
func TestRaftTransportParam(t *testing.T) {
	for _, tc := range []struct {
		name, transport string
		wantHello       bool
	}{
		{"default", "", true},
		{"dragonboat", "dragonboat", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRaftTestCluster(t, "rt"+tc.name, 3, RaftRebalanceOptions{Off: true})
			for i := range 3 {
				c.start(i, 3)
			}
			params := map[string]string{}
			if tc.transport != "" {
				params["transport"] = tc.transport
			}
			c.createRaft("r", 3, 3, []int{0, 1, 2}, params)
			for i, addr := range c.raftAddrs {
				nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				nc.SetDeadline(time.Now().Add(5 * time.Second))
				nc.Write(raftlsHello)
				b := make([]byte, 1)
				_, err = io.ReadFull(nc, b)
				nc.Close()
				if got := err == nil && b[0] == 5; got != tc.wantHello {
					t.Fatalf("n%d's Raft address answered the hello: %v (%x, %v), want %v", i+1, got, b, err, tc.wantHello)
				}
			}
			for i := range 3 {
				ctx, cl := c.raftClient("r", i, i+1, time.Minute, 10*time.Second)
				k := "k" + string(rune('1'+i))
				if _, err := cl.Set(ctx, k, []byte(k)); err != nil {
					t.Fatalf("SET at n%d: %v", i+1, err)
				}
				for j := range 3 {
					ctx, cl := c.raftClient("r", j, j+1, time.Minute, 10*time.Second)
					v, err := cl.Get(client.With(ctx, client.ReadMode("linearizable")), k)
					if err != nil || string(v.Data) != k {
						t.Fatalf("GET %s at n%d: %q, %v", k, j+1, v.Data, err)
					}
				}
			}
		})
	}
}
