package nodes

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/nodes/security"
)

// adminAuthPolicy extends newSecEnv's policy with admins of the whole
// cluster (token "ops", user "root") and principals that hold admin on one
// namespace only (alice's certificate, token "nsadmin"): the admin API
// needs admin on "*".
func adminAuthPolicy(t *testing.T, env secEnv) {
	t.Helper()
	hash, err := security.HashPassword(testPassword, security.HashParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	pf := security.PolicyFile{
		Users: map[string]security.UserEntry{"bob": {Password: hash}, "root": {Password: hash}},
		Tokens: map[string]security.TokenEntry{"ci-bot": {SHA256: security.TokenDigest(testToken)},
			"ops": {SHA256: security.TokenDigest("ops-" + testToken)}, "nsadmin": {SHA256: security.TokenDigest("nsadmin-" + testToken)}},
		Grants: []security.Grant{
			{Principals: []string{"alice", "nsadmin"}, Namespaces: []string{"default", "kv"}, Actions: []string{"admin"}},
			{Principals: []string{"reader", "bob"}, Namespaces: []string{"default"}, Actions: []string{"read"}},
			{Principals: []string{"ci-bot"}, Namespaces: []string{"*"}, Actions: []string{"read", "write"}},
			{Principals: []string{"ops", "root"}, Namespaces: []string{"*"}, Actions: []string{"admin"}},
		},
	}
	b, err := json.Marshal(pf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(env.policy, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestAdminAPIAuth: on a node with TLS and a policy, the admin HTTP API
// (backup, checkpoints, raft import, clock) serves HTTPS with the client
// listener's TLS settings, and each endpoint refuses no credentials, wrong
// ones (token, password, an unknown scheme, a certificate of another CA),
// and principals without admin on the whole cluster (a read-write token, a
// reader, an admin of some namespaces) with 401 or 403 and a body that
// says why, before any work (the clock does not move, no checkpoint is
// taken); it accepts an admin token, an admin user and a node certificate.
// Refusals are counted in dialkv_rejected_requests_total, and neither the
// password nor a token shows in the logs or /metrics.
func TestAdminAPIAuth(t *testing.T) {
	env := newSecEnv(t)
	adminAuthPolicy(t, env)
	sec := loadSecurity(t, "--tls-cert", env.path("node-n1.crt"), "--tls-key", env.path("node-n1.key"),
		"--tls-ca", env.path("ca.crt"), "--auth-file", env.policy,
		"--peer-tls-cert", env.path("node-n1.crt"), "--peer-tls-key", env.path("node-n1.key"), "--peer-tls-ca", env.path("ca.crt"))
	var logs syncBuffer
	data := t.TempDir()
	n := startNode(t, Config{DataDir: data, AdminAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0", Security: sec,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	other := newSecEnv(t) // another CA

	type who struct {
		name        string
		cert        string // client certificate of env ("" none)
		tls         *tls.Config
		user, token string
		scheme      string // raw Authorization header
		want        int    // 0: accepted
	}
	anyCert := func(e secEnv, cert string) *tls.Config {
		cfg := env.clientTLS(t, "") // trusts env's CA (the node's)
		if cert != "" {
			kp, err := tls.LoadX509KeyPair(e.path(cert+".crt"), e.path(cert+".key"))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		return cfg
	}
	whos := []who{
		{name: "none", want: http.StatusUnauthorized},
		{name: "wrong token", token: "wrong-" + testToken, want: http.StatusUnauthorized},
		{name: "wrong password", user: "root", want: http.StatusUnauthorized},
		{name: "unknown user", user: "nobody", want: http.StatusUnauthorized},
		{name: "unknown scheme", scheme: "Digest " + testToken, want: http.StatusUnauthorized},
		{name: "empty bearer", scheme: "Bearer ", want: http.StatusUnauthorized},
		{name: "read-write token", token: testToken, want: http.StatusForbidden},
		{name: "reader password", user: "bob", want: http.StatusForbidden},
		{name: "reader cert", cert: "client-reader", want: http.StatusForbidden},
		{name: "namespace admin cert", cert: "client-alice", want: http.StatusForbidden},
		{name: "namespace admin token", token: "nsadmin-" + testToken, want: http.StatusForbidden},
		{name: "wrong token beside a node cert", cert: "node-n2", token: "wrong-" + testToken, want: http.StatusUnauthorized},
		{name: "admin token", token: "ops-" + testToken},
		{name: "admin password", user: "root"},
		{name: "node cert", cert: "node-n2"},
	}
	endpoints := []struct{ method, path string }{
		{"GET", "/v1/backup"},
		{"POST", "/v1/checkpoints"},
		{"GET", "/v1/checkpoints"},
		{"POST", "/v1/raft/import?namespace=none&shard=0&shards=1"},
		{"GET", "/v1/clock"},
		{"POST", "/v1/clock?offset=1h"},
	}
	do := func(w who, method, path string) (int, string) {
		t.Helper()
		cfg := w.tls
		if cfg == nil {
			cfg = anyCert(env, w.cert)
		}
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		defer hc.CloseIdleConnections()
		req, _ := http.NewRequest(method, "https://"+n.AdminAddr()+path, strings.NewReader("x"))
		switch {
		case w.scheme != "":
			req.Header.Set("Authorization", w.scheme)
		case w.token != "":
			req.Header.Set("Authorization", "Bearer "+w.token)
		case w.user == "root" && w.name == "wrong password":
			req.SetBasicAuth(w.user, "wrong-"+testPassword)
		case w.user != "":
			req.SetBasicAuth(w.user, testPassword)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s as %s: %v", method, path, w.name, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200)) // a backup is a tar stream
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	checkpoints := func() int {
		es, _ := os.ReadDir(filepath.Join(data, checkpointDirName))
		return len(es)
	}
	refused := map[int]int{}
	for _, w := range whos {
		for _, ep := range endpoints {
			cps := checkpoints()
			code, body := do(w, ep.method, ep.path)
			switch {
			case w.want == 0 && (code == http.StatusUnauthorized || code == http.StatusForbidden):
				t.Errorf("%s %s as %s: %d %q, want it accepted (go test ./nodes -run TestAdminAPIAuth)", ep.method, ep.path, w.name, code, body)
			case w.want != 0 && code != w.want:
				t.Errorf("%s %s as %s: %d %q, want %d (go test ./nodes -run TestAdminAPIAuth)", ep.method, ep.path, w.name, code, body, w.want)
			case w.want == http.StatusUnauthorized && !strings.HasPrefix(body, "NOAUTH unauthenticated: "):
				t.Errorf("%s %s as %s: body %q, want NOAUTH ...", ep.method, ep.path, w.name, body)
			case w.want == http.StatusForbidden && !strings.HasPrefix(body, "FORBIDDEN forbidden: ") || w.want == http.StatusForbidden && !strings.Contains(body, `may not admin namespace "*"`):
				t.Errorf("%s %s as %s: body %q, want FORBIDDEN ... may not admin namespace \"*\"", ep.method, ep.path, w.name, body)
			}
			if w.want != 0 {
				refused[w.want]++
				if off := n.Clock().Offset(); off != 0 {
					t.Fatalf("%s %s as %s was refused but the clock offset is %v", ep.method, ep.path, w.name, off)
				}
				if got := checkpoints(); got != cps {
					t.Fatalf("%s %s as %s was refused but the checkpoints went %d -> %d", ep.method, ep.path, w.name, cps, got)
				}
				continue
			}
			if ep.method == "POST" && strings.HasPrefix(ep.path, "/v1/clock") {
				if off := n.Clock().Offset(); off != time.Hour {
					t.Errorf("POST /v1/clock as %s: offset %v, want 1h", w.name, off)
				}
				n.Clock().SetOffset(0)
			}
		}
	}
	// A certificate of another CA, and plain HTTP, fail before HTTP.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: anyCert(other, "node-n1")}}
	if resp, err := hc.Get("https://" + n.AdminAddr() + "/v1/clock"); err == nil {
		resp.Body.Close()
		t.Errorf("a node certificate of another CA: %s, want a failed handshake", resp.Status)
	}
	if resp, err := http.Get("http://" + n.AdminAddr() + "/v1/clock"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP: %s %q, want refused", resp.Status, b)
		}
	}
	resp, err := http.Get("http://" + n.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`dialkv_rejected_requests_total{reason="unauthenticated"} ` + itoa(refused[http.StatusUnauthorized]),
		`dialkv_rejected_requests_total{reason="forbidden"} ` + itoa(refused[http.StatusForbidden]),
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	all := logs.String() + string(b)
	for _, secret := range []string{testPassword, testToken} {
		if strings.Contains(all, secret) {
			t.Errorf("a secret (%.6s...) is in the logs or /metrics", secret)
		}
	}
	if !strings.Contains(logs.String(), "admin request refused") {
		t.Error("refusals are not logged")
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
