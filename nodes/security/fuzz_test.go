package security

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzParsePolicy: ParsePolicy (the --auth-file parser) never panics,
// rejects with ErrBadPolicy, and a policy it accepts answers Authorize
// with nil or a typed *AuthError, never grants anything to an anonymous
// principal, and never grants more to a name than the union of the grants
// that name it or "*". Seed corpus: testdata/fuzz/FuzzParsePolicy and the
// f.Add calls. Longer runs:
//
//	go test ./nodes/security -run '^$' -fuzz FuzzParsePolicy -fuzztime 60s
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(`{"grants":[{"principals":["alice"],"namespaces":["default","app-*"],"actions":["read","write"]}]}`), "alice", "app-1")
	f.Add([]byte(`{"users":{"u":{"password":"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"}},"grants":[{"principals":["*"],"namespaces":["*"],"actions":["admin"]}]}`), "u", "x")
	f.Add([]byte(`{"tokens":{"t":{"sha256":"`+strings.Repeat("0f", 32)+`"}},"grants":[]}`), "t", "")
	f.Add([]byte(`{"grants":[{"principals":["a"],"namespaces":["*x"],"actions":["read"]}]}`), "a", "*x")
	f.Add([]byte(`null`), "", "")
	f.Fuzz(func(t *testing.T, data []byte, who, ns string) {
		p, err := ParsePolicy(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadPolicy) {
				t.Fatalf("error without ErrBadPolicy: %v", err)
			}
			return
		}
		if err := p.Authorize(Principal{}, ns, Read); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("anonymous read of %q: %v; want unauthenticated", ns, err)
		}
		for _, a := range []Action{Read, Write, Admin, Read | Write} {
			err := p.Authorize(Principal{Name: who, Method: "cert"}, ns, a)
			var ae *AuthError
			if err != nil && !errors.As(err, &ae) {
				t.Fatalf("Authorize error %v is not an *AuthError", err)
			}
			if who != "" && err != nil && !errors.Is(err, ErrForbidden) {
				t.Fatalf("named principal got %v; want nil or forbidden", err)
			}
			if who != "" && err == nil && p.Rights(who, nsOrDefault(ns)) == 0 {
				t.Fatalf("%q allowed %v on %q without any right", who, a, ns)
			}
		}
	})
}

func nsOrDefault(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// FuzzParsePasswordHash: the PHC parser never panics, and what it accepts
// is within the bounds that keep verification cheap enough.
func FuzzParsePasswordHash(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g")
	f.Add("$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2id$v=19$m=+1,t=01,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$$$$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePasswordHash(s)
		if err != nil {
			if !errors.Is(err, ErrBadHash) {
				t.Fatalf("error without ErrBadHash: %v", err)
			}
			return
		}
		if h.p.Memory == 0 || h.p.Memory > maxHashMemory || h.p.Time == 0 || h.p.Time > maxHashTime ||
			h.p.Threads == 0 || h.p.Threads > maxHashThreads || len(h.salt) < 8 || len(h.key) < 16 {
			t.Fatalf("accepted out-of-bounds parameters %+v salt %d key %d", h.p, len(h.salt), len(h.key))
		}
	})
}
