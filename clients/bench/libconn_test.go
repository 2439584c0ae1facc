package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
)

// TestViaClient: --via-client runs through the Go client; with one of the
// two addresses dead, its breaker trips, the run still succeeds on the
// other node, and the summary lists the trips.
func TestViaClient(t *testing.T) {
	n, err := nodes.Start(nodes.Config{ID: "bench-lib", Listen: "127.0.0.1:0", DataDir: t.TempDir(), Fsync: core.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there: connections are refused
	addrs := dead + "," + n.Addr()

	// One refused connection trips the dead node's breaker; the client
	// stays on the live node (the default namespace is local: not spread).
	cfg := Config{Addr: addrs, Workload: "50/50", Keys: 200, Dist: "uniform", ValueSize: 16, Clients: 4, Batch: 1,
		Duration: 300 * time.Millisecond, Load: true, Seed: 1, Timeout: 5 * time.Second, Protocol: "binary", ViaClient: true}
	connect, lib, err := ClientConnector(cfg, client.WithCircuitBreaker(1, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	res, err := Run(context.Background(), cfg, connect, nil)
	if err != nil || res.Ops == 0 || res.Errors != 0 {
		t.Fatalf("run through the client: %+v, %v", res, err)
	}
	var dn client.NodeStats
	for _, ns := range lib.Stats().Nodes {
		if ns.Addr == dead {
			dn = ns
		}
	}
	if dn.Trips != 1 || dn.Breaker != client.BreakerOpen {
		t.Fatalf("dead node %+v, want its breaker open after one trip", dn)
	}
	res.BreakerTrips = []NodeTrips{{Addr: dead, Trips: 1, State: "open"}}
	var sum bytes.Buffer
	WriteSummary(&sum, res)
	if !strings.Contains(sum.String(), "breaker   "+dead+" tripped 1 times (now open)") {
		t.Errorf("summary lacks the breaker line:\n%s", sum.String())
	}

	// Through Main, as a person runs it.
	var out, errw bytes.Buffer
	code := Main([]string{"--addr", addrs, "--via-client", "--workload", "95/5", "--keys", "200", "--clients", "2",
		"--batch", "10", "--duration", "200ms", "--json"}, &out, &errw)
	if code != 0 {
		t.Fatalf("bench --via-client --json exited %d: %s", code, errw.String())
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if r.Ops == 0 || r.Errors != 0 || !r.Config.ViaClient {
		t.Errorf("result: ops %d errors %d config %+v", r.Ops, r.Errors, r.Config)
	}
}
