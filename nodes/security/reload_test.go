package security

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyReload: sessions bound under one policy file are checked
// against the file as reloaded, credential by credential.
func TestPolicyReload(t *testing.T) {
	hash := func(pw string) string {
		h, err := HashPassword(Secret(pw), fastParams)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	tok, tok2 := Secret("dkv_reload-token-1"), Secret("dkv_reload-token-2")
	bobHash, carolHash := hash("bob-pw"), hash("carol-pw")
	base := func() PolicyFile {
		return PolicyFile{
			Users:  map[string]UserEntry{"bob": {Password: bobHash}, "carol": {Password: carolHash}},
			Tokens: map[string]TokenEntry{"ci-bot": {SHA256: TokenDigest(tok)}},
			Grants: []Grant{{Principals: []string{"*"}, Namespaces: []string{"kv"}, Actions: []string{"read", "write"}}},
		}
	}
	path := filepath.Join(t.TempDir(), "policy.json")
	write := func(f PolicyFile) {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert := &x509.Certificate{SerialNumber: big.NewInt(0x1f2e), Subject: pkix.Name{CommonName: "alice"}}
	tests := []struct {
		name   string
		change func(*PolicyFile)
		// revoked lists the principals refused after the reload.
		revoked []string
	}{
		{"unchanged", func(*PolicyFile) {}, nil},
		{"token removed", func(f *PolicyFile) { delete(f.Tokens, "ci-bot") }, []string{"ci-bot"}},
		{"token replaced", func(f *PolicyFile) { f.Tokens["ci-bot"] = TokenEntry{SHA256: TokenDigest(tok2)} }, []string{"ci-bot"}},
		{"user removed", func(f *PolicyFile) { delete(f.Users, "bob") }, []string{"bob"}},
		{"password changed", func(f *PolicyFile) { f.Users["carol"] = UserEntry{Password: hash("new-pw")} }, []string{"carol"}},
		{"certificate revoked", func(f *PolicyFile) { f.RevokedCerts = []string{"1F:2E"} }, []string{"alice"}},
		{"other certificate revoked", func(f *PolicyFile) { f.RevokedCerts = []string{"0x1f2f"} }, nil},
		{"token revoked by digest", func(f *PolicyFile) { f.RevokedTokens = []string{TokenDigest(tok)} }, []string{"ci-bot"}},
		{"token revoked and listed again under another name", func(f *PolicyFile) {
			f.Tokens["ci-bot-2"] = f.Tokens["ci-bot"]
			delete(f.Tokens, "ci-bot")
			f.RevokedTokens = []string{TokenDigest(tok)}
		}, []string{"ci-bot"}},
		{"other token revoked", func(f *PolicyFile) { f.RevokedTokens = []string{TokenDigest(tok2)} }, nil},
		{"user revoked", func(f *PolicyFile) { f.RevokedUsers = []string{"bob"} }, []string{"bob"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			write(base())
			s, err := OpenPolicyStore(path)
			if err != nil {
				t.Fatal(err)
			}
			sessions := map[string]Principal{"alice": {Name: "alice", Method: "cert", serial: cert.SerialNumber.Text(16)}}
			for _, u := range []string{"bob", "carol"} {
				if sessions[u], err = s.AuthenticatePassword(u, Secret(u+"-pw")); err != nil {
					t.Fatal(err)
				}
			}
			if sessions["ci-bot"], err = s.AuthenticateToken(tok); err != nil {
				t.Fatal(err)
			}
			f := base()
			tc.change(&f)
			write(f)
			if _, err := s.Reload(); err != nil {
				t.Fatal(err)
			}
			for name, pr := range sessions {
				refused := strings.Contains(strings.Join(tc.revoked, ","), name)
				err := s.Authorize(pr, "kv", Write)
				if refused != errors.Is(err, ErrUnauthenticated) || !refused && err != nil {
					t.Errorf("%s after the reload: %v; revoked %v", name, err, refused)
				}
				if verr := s.Valid(pr); (verr != nil) != refused {
					t.Errorf("%s: Valid = %v; revoked %v", name, verr, refused)
				}
			}
			herr := s.VerifyClientCert(tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}})
			if wantRefused := strings.Contains(strings.Join(tc.revoked, ","), "alice"); (herr != nil) != wantRefused {
				t.Errorf("handshake with alice's certificate: %v; revoked %v", herr, wantRefused)
			}
			// A fresh login with the new file works for what it still holds.
			if _, err := s.AuthenticateToken(tok); (err != nil) != strings.Contains(strings.Join(tc.revoked, ","), "ci-bot") {
				t.Errorf("new token login: %v", err)
			}
		})
	}
	t.Run("a bad file keeps the policy in force", func(t *testing.T) {
		write(base())
		s, err := OpenPolicyStore(path)
		if err != nil {
			t.Fatal(err)
		}
		pr, _ := s.AuthenticateToken(tok)
		bad := base()
		bad.RevokedCerts = []string{"not-hex"}
		write(bad)
		if _, err := s.Reload(); !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), "revoked_certs entry 1") {
			t.Fatalf("reload of a bad file: %v", err)
		}
		if err := s.Authorize(pr, "kv", Read); err != nil {
			t.Fatalf("the old policy is not in force after a failed reload: %v", err)
		}
		if _, err := NewPolicyStore(s.Policy()).Reload(); err == nil {
			t.Fatal("a store without a file reloaded")
		}
	})
}
