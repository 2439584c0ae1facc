package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// A short run against an in-process node, through Main as a person runs
// it: single commands and batches, text and JSON output.
func TestEndToEnd(t *testing.T) {
	n, err := nodes.Start(nodes.Config{ID: "bench-e2e", Listen: "127.0.0.1:0", DataDir: t.TempDir(), Fsync: core.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	}()
	var out, errw bytes.Buffer
	code := Main([]string{"--addr", n.Addr(), "--workload", "50/50", "--keys", "500", "--clients", "4",
		"--duration", "400ms", "--progress", "100ms", "--value-size", "32"}, &out, &errw)
	if code != 0 {
		t.Fatalf("bench exited %d: %s", code, errw.String())
	}
	for _, want := range []string{"total", "reads", "writes", "p99", "ops/s", "load      500 keys"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errw.String(), "read p99") {
		t.Errorf("no progress lines on stderr: %s", errw.String())
	}

	out.Reset()
	code = Main([]string{"--addr", n.Addr(), "--workload", "95/5", "--dist", "zipfian", "--keys", "500", "--clients", "2",
		"--batch", "20", "--duration", "300ms", "--load=false", "--json", "--value-size", "32"}, &out, &errw)
	if code != 0 {
		t.Fatalf("bench --json exited %d: %s", code, errw.String())
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out.String())
	}
	if r.Ops == 0 || r.Errors != 0 || r.Ops != 20*(r.Reads.Requests+r.Writes.Requests) || r.Reads.P99Ms <= 0 {
		t.Errorf("result %+v", r)
	}

	// The event-loop client (--io loop), single calls and batches.
	for _, batch := range []string{"1", "10"} {
		out.Reset()
		code = Main([]string{"--addr", n.Addr(), "--io", "loop", "--keys", "500", "--clients", "3", "--batch", batch,
			"--duration", "300ms", "--load=false", "--json", "--value-size", "32"}, &out, &errw)
		if code != 0 {
			t.Fatalf("bench --io loop exited %d: %s", code, errw.String())
		}
		var r Result
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("--json output: %v\n%s", err, out.String())
		}
		if r.Ops == 0 || r.Errors != 0 || r.Reads.P99Ms <= 0 || r.Config.IO != "loop" {
			t.Errorf("--io loop --batch %s: result %+v", batch, r)
		}
	}

	// The load phase wrote every key with a value of the configured size
	// (and the second run wrote values of the same size).
	conn, err := connectOnce(n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	failed, err := conn.Do(context.Background(), []core.Command{core.Cmd("GET", string(Key(0))), core.Cmd("GET", string(Key(499)))})
	if err != nil || failed != 0 {
		t.Fatalf("GET loaded keys: %d failed, %v", failed, err)
	}
	tc := conn.(*thriftConn)
	resp, err := tc.c.Call(context.Background(), tc.opts, &gen.Command{Name: "STRLEN", Argv: [][]byte{Key(499)}})
	if err != nil || resp.Replies[0].GetIntVal() != 32 {
		t.Errorf("STRLEN of a loaded key: %v %v", resp, err)
	}
}

func connectOnce(addr string) (Conn, error) {
	connect, err := ThriftConnector(addr, "binary", "", 5*time.Second)
	if err != nil {
		return nil, err
	}
	return connect(context.Background())
}
