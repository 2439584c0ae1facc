package python

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/nodes/security"
)

// TestPythonLogin: the Python wrapper connects over TLS and logs in with
// a password or a token through the IDL's login call; wrong credentials
// and no credentials are refused as Unauthenticated, and a token with a
// read-only grant gets Forbidden on a write.
func TestPythonLogin(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", dir, "--nodes", "n1"}, &out, &errb); code != 0 {
		t.Fatalf("dialkv certs: %d %s", code, errb.String())
	}
	const password, token = "py-password-3c9e1f", "tok-py-8a7b6c5d4e3f2a1b"
	hash, err := security.HashPassword(password, security.HashParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := json.Marshal(security.PolicyFile{
		Users:  map[string]security.UserEntry{"bob": {Password: hash}},
		Tokens: map[string]security.TokenEntry{"ci-bot": {SHA256: security.TokenDigest(token)}},
		Grants: []security.Grant{
			{Principals: []string{"bob"}, Namespaces: []string{"default"}, Actions: []string{"read", "write"}},
			{Principals: []string{"ci-bot"}, Namespaces: []string{"default"}, Actions: []string{"read"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	polFile := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(polFile, pol, 0o600); err != nil {
		t.Fatal(err)
	}
	f := security.Flags{TLSCert: filepath.Join(dir, "node-n1.crt"), TLSKey: filepath.Join(dir, "node-n1.key"), AuthFile: polFile}
	sec, err := f.Load(1)
	if err != nil {
		t.Fatal(err)
	}
	n, err := nodes.Start(nodes.Config{ID: "n1", Listen: "127.0.0.1:0", Engine: "memory", Fsync: core.SyncNever, Security: sec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"password", []string{"DIALKV_USER=bob", "DIALKV_PASSWORD=" + password}, "bob\nok"},
		{"wrong password", []string{"DIALKV_USER=bob", "DIALKV_PASSWORD=not-" + password}, "unauthenticated"},
		{"token read-only", []string{"DIALKV_TOKEN=" + token}, "ci-bot\nforbidden"},
		{"wrong token", []string{"DIALKV_TOKEN=x" + token}, "unauthenticated"},
		{"no credentials", nil, "None\nunauthenticated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(py, "interop.py", n.Addr(), "auth", "py:")
			cmd.Env = append(append(os.Environ(), "DIALKV_TLS_CA="+filepath.Join(dir, "ca.crt")), tc.env...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("interop.py auth: %v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
			}
			if got := strings.TrimSpace(out.String()); got != tc.want {
				t.Fatalf("interop.py auth printed %q, want %q (stderr: %s)", got, tc.want, errb.String())
			}
		})
	}
}
