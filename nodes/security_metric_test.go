package nodes

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dialkv/dialkv/clients/client"
)

// TestRejectedRequestsMetric: a node with TLS and a policy counts the
// requests it refuses by reason in dialkv_rejected_requests_total (an
// anonymous GET and a failed token login are unauthenticated, a reader's
// SET is forbidden), and the series carry no principal or secret.
func TestRejectedRequestsMetric(t *testing.T) {
	env := newSecEnv(t)
	sec := loadSecurity(t, "--tls-cert", env.path("node-n1.crt"), "--tls-key", env.path("node-n1.key"),
		"--tls-ca", env.path("ca.crt"), "--auth-file", env.policy)
	n := startNode(t, Config{Engine: "memory", MetricsAddr: "127.0.0.1:0", Security: sec})
	ctx := context.Background()
	if _, err := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, ""))).Get(ctx, "k"); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("anonymous GET: %v; want unauthenticated", err)
	}
	if _, err := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "")), client.WithToken("wrong-"+testToken)).Get(ctx, "k"); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("GET after a wrong token: %v; want unauthenticated", err)
	}
	if _, err := secClient(t, n.Addr(), client.WithTLS(env.clientTLS(t, "client-reader"))).Set(ctx, "k", []byte("v")); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("reader SET: %v; want forbidden", err)
	}
	resp, err := http.Get("http://" + n.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "dialkv_rejected_requests_total{") {
			lines = append(lines, l)
		}
	}
	got := strings.Join(lines, "\n")
	// The failed login is one refusal; the client does not send its GET
	// on a connection whose login failed.
	for _, want := range []string{
		`dialkv_rejected_requests_total{reason="unauthenticated"} 2`,
		`dialkv_rejected_requests_total{reason="forbidden"} 1`,
		`dialkv_rejected_requests_total{reason="rate_limited"} 0`,
		`dialkv_rejected_requests_total{reason="overloaded"} 0`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %s; its series:\n%s\n(go test ./nodes -run TestRejectedRequestsMetric)", want, got)
		}
	}
	if strings.Contains(string(b), testToken) || strings.Contains(got, "reader") {
		t.Error("a secret or a principal is in /metrics")
	}
}
