package nodes

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dialkv/dialkv/core"
)

func TestMetrics(t *testing.T) {
	n := startNode(t, Config{MetricsAddr: "127.0.0.1:0", Limits: coreLimitsWarnAt(10)})
	c := dial(t, n.Addr())
	ctx := context.Background()
	c.Call(ctx, noOpts(), cmd("SET", "k", "a value longer than ten bytes"))
	c.Call(ctx, noOpts(), cmd("SADD", "k", "x")) // WrongType
	resp, err := http.Get("http://" + n.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, want := range []string{
		`dialkv_requests_total{op="call",outcome="ok"} 1`,
		`dialkv_requests_total{op="call",outcome="wrong_type"} 1`,
		`dialkv_request_duration_seconds_bucket{op="call",le="`,
		`dialkv_open_connections 1`,
		`dialkv_connections_total{event="opened"} 1`,
		`dialkv_received_bytes_total `,
		`dialkv_sent_bytes_total `,
		`dialkv_large_value_warnings_total{namespace="default"} 1`,
		`dialkv_group_syncs_total{namespace="default"}`,
		`dialkv_engine_disk_bytes{namespace="default"}`,
		`dialkv_engine_wal_bytes_written_total{namespace="default"}`,
		`dialkv_engine_value_cache_hits_total{namespace="default"}`,
		`dialkv_engine_value_cache_bytes{namespace="default"}`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// SADD read the key SET had just written through the value cache.
	if strings.Contains(body, `dialkv_engine_value_cache_hits_total{namespace="default"} 0`+"\n") {
		t.Error("the value cache reports no hit")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}

func coreLimitsWarnAt(n int) (l core.Limits) {
	l.LargeValueWarn = n
	return l
}
