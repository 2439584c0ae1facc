package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
)

// TestViaClient: --via-client runs through the Go client; with one of the
// two addresses dead, its breaker trips, the run still succeeds on the
// other node, and the summary and the JSON list the trips.
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

	var out, errw bytes.Buffer
	code := Main([]string{"--addr", addrs, "--via-client", "--workload", "50/50", "--keys", "200", "--clients", "4",
		"--duration", "300ms", "--progress", "100ms", "--value-size", "16"}, &out, &errw)
	if code != 0 {
		t.Fatalf("bench --via-client exited %d: %s", code, errw.String())
	}
	if !strings.Contains(out.String(), "breaker   "+dead+" tripped") || strings.Contains(out.String(), "breaker   "+n.Addr()) {
		t.Errorf("summary should list the dead node's breaker trips (only):\n%s", out.String())
	}

	out.Reset()
	code = Main([]string{"--addr", addrs, "--via-client", "--workload", "95/5", "--keys", "200", "--clients", "2",
		"--batch", "10", "--duration", "200ms", "--load=false", "--json"}, &out, &errw)
	if code != 0 {
		t.Fatalf("bench --via-client --json exited %d: %s", code, errw.String())
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if r.Ops == 0 || r.Errors != 0 || len(r.BreakerTrips) != 1 || r.BreakerTrips[0].Addr != dead || r.BreakerTrips[0].Trips < 1 {
		t.Errorf("result: ops %d errors %d trips %+v", r.Ops, r.Errors, r.BreakerTrips)
	}
}
