package security

import (
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	dir := devCerts(t)
	pol := filepath.Join(dir, "policy.json")
	b, _ := json.Marshal(PolicyFile{Grants: []Grant{{Principals: []string{"alice"}, Namespaces: []string{"*"}, Actions: []string{"read"}}}})
	if err := os.WriteFile(pol, b, 0o600); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	tlsArgs := []string{"--tls-cert", p("node-n1.crt"), "--tls-key", p("node-n1.key")}
	for _, tc := range []struct {
		name  string
		args  []string
		want  string // "" : success
		check func(t *testing.T, s Settings)
	}{
		{"nothing", nil, "", func(t *testing.T, s Settings) {
			if s.ClientTLS != nil || s.PeerServerTLS != nil || s.NewLimiter != nil || s.Shedder != nil {
				t.Fatal("security on without flags")
			}
			if _, ok := s.Authorizer.(AllowAll); !ok {
				t.Fatal("authorizer is not AllowAll")
			}
		}},
		{"tls", tlsArgs, "", func(t *testing.T, s Settings) {
			if s.ClientTLS == nil || s.ClientTLS.ClientCAs != nil {
				t.Fatal("want server-only TLS")
			}
		}},
		{"mtls + auth", append(tlsArgs, "--tls-ca", p("ca.crt"), "--auth-file", pol), "", func(t *testing.T, s Settings) {
			if _, ok := s.Authorizer.(*PolicyStore); !ok || s.Policy == nil || s.ClientTLS.ClientCAs == nil || s.ClientTLS.VerifyConnection == nil {
				t.Fatal("want mutual TLS and the policy")
			}
		}},
		{"peers", []string{"--peer-tls-cert", p("node-n2.crt"), "--peer-tls-key", p("node-n2.key"), "--peer-tls-ca", p("ca.crt")}, "", func(t *testing.T, s Settings) {
			if s.PeerServerTLS == nil || s.PeerClientTLS == nil {
				t.Fatal("want peer TLS")
			}
		}},
		{"limits", []string{"--rate-limit", "100", "--max-inflight", "8"}, "", func(t *testing.T, s Settings) {
			if s.NewLimiter == nil || s.NewLimiter() == s.NewLimiter() || s.Shedder == nil {
				t.Fatal("want a fresh limiter per connection and a shedder")
			}
		}},
		{"key without cert", []string{"--tls-key", p("node-n1.key")}, "go together", nil},
		{"ca alone", []string{"--tls-ca", p("ca.crt")}, "go together", nil},
		{"peer without ca", []string{"--peer-tls-cert", p("node-n1.crt"), "--peer-tls-key", p("node-n1.key")}, "go together", nil},
		{"auth with TLS, no client certs", append(tlsArgs, "--auth-file", pol), "", func(t *testing.T, s Settings) {
			if s.Authenticator == nil || s.ClientTLS.ClientCAs != nil {
				t.Fatal("want logins checked by the policy over server-only TLS")
			}
		}},
		{"auth without TLS", []string{"--auth-file", pol}, "needs TLS", nil},
		{"missing auth file", append(tlsArgs, "--tls-ca", p("ca.crt"), "--auth-file", p("nope.json")), "nope.json", nil},
		{"garbage key", []string{"--tls-cert", p("node-n1.crt"), "--tls-key", p("ca.crt")}, "ca.crt", nil},
		{"burst alone", []string{"--rate-burst", "3"}, "needs --rate-limit", nil},
		{"negative", []string{"--max-inflight", "-1"}, "negative", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Flags
			fs := flag.NewFlagSet("node", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			f.Register(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			s, err := f.Load(1)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, s)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want one mentioning %q", err, tc.want)
			}
			if !errors.Is(err, ErrBadFlags) && !errors.Is(err, ErrTLSConfig) && !errors.Is(err, ErrBadPolicy) && !strings.Contains(err.Error(), "policy") {
				t.Fatalf("untyped error %v", err)
			}
		})
	}
}
