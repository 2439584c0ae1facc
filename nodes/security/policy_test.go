package security

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// testPolicy returns a policy with users alice (rw on default and app-*),
// reader (read on default), ops (admin everywhere), token ci-bot (write on
// ingest) and public read of "public" for everyone authenticated.
func testPolicy(t testing.TB) (*Policy, Secret) {
	t.Helper()
	hash := func(pw string) string {
		h, err := HashPassword(Secret(pw), fastParams)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	tok := Secret("dkv_test-token")
	f := PolicyFile{
		Users: map[string]UserEntry{
			"alice":  {Password: hash("alice-pw")},
			"reader": {Password: hash("reader-pw")},
			"ops":    {Password: hash("ops-pw")},
		},
		Tokens: map[string]TokenEntry{"ci-bot": {SHA256: TokenDigest(tok)}},
		Grants: []Grant{
			{Principals: []string{"alice"}, Namespaces: []string{"default", "app-*"}, Actions: []string{"read", "write"}},
			{Principals: []string{"reader"}, Namespaces: []string{"default"}, Actions: []string{"read"}},
			{Principals: []string{"ops"}, Namespaces: []string{"*"}, Actions: []string{"admin"}},
			{Principals: []string{"ci-bot"}, Namespaces: []string{"ingest"}, Actions: []string{"write"}},
			{Principals: []string{"*"}, Namespaces: []string{"public"}, Actions: []string{"read"}},
		},
	}
	// Round-trip through the file format, as a node would load it.
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePolicy(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return p, tok
}

func TestAuthorize(t *testing.T) {
	p, _ := testPolicy(t)
	const ok, unauth, forbid = "ok", "unauthenticated", "forbidden"
	for _, tc := range []struct {
		who    string
		ns     string
		action Action
		want   string
	}{
		{"", "default", Read, unauth},
		{"alice", "default", Read, ok},
		{"alice", "", Write, ok}, // "" is "default"
		{"alice", "app-orders", Write, ok},
		{"alice", "app", Write, forbid}, // prefix app-* does not match "app"
		{"alice", "other", Read, forbid},
		{"alice", "default", Admin, forbid},
		{"reader", "default", Read, ok},
		{"reader", "default", Write, forbid},
		{"reader", "default", Read | Write, forbid},
		{"ops", "anything", Write, ok}, // admin implies write
		{"ops", "anything", Admin, ok},
		{"ci-bot", "ingest", Write, ok},
		{"ci-bot", "ingest", Read, forbid}, // write does not imply read
		{"stranger", "public", Read, ok},   // "*" is any authenticated principal
		{"stranger", "public", Write, forbid},
	} {
		err := p.Authorize(Principal{Name: tc.who, Method: "cert"}, tc.ns, tc.action)
		got := ok
		switch {
		case errors.Is(err, ErrUnauthenticated):
			got = unauth
		case errors.Is(err, ErrForbidden):
			got = forbid
		case err != nil:
			got = "other: " + err.Error()
		}
		if got != tc.want {
			t.Errorf("Authorize(%q, %q, %v) = %s (%v); want %s", tc.who, tc.ns, tc.action, got, err, tc.want)
		}
		var ae *AuthError
		if err != nil && !errors.As(err, &ae) {
			t.Errorf("error %v is not an *AuthError", err)
		}
	}
}

func TestAuthenticate(t *testing.T) {
	p, tok := testPolicy(t)
	pr, err := p.AuthenticatePassword("alice", "alice-pw")
	if err != nil || pr.Name != "alice" || pr.Method != "password" || pr.bind == ([32]byte{}) {
		t.Fatalf("alice: %v %v", pr, err)
	}
	for _, tc := range []struct{ user, pw string }{{"alice", "reader-pw"}, {"alice", ""}, {"nobody", "alice-pw"}} {
		_, err := p.AuthenticatePassword(tc.user, Secret(tc.pw))
		if !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s/%s: err = %v; want unauthenticated", tc.user, tc.pw, err)
		}
		if strings.Contains(err.Error(), tc.pw) && tc.pw != "" {
			t.Errorf("error echoes the password: %v", err)
		}
	}
	// The dummy verified for unknown users costs what a real user's hash
	// costs (the test policy's hashes are cheap; the defaults are not).
	if got, want := p.dummy.p, p.users["alice"].p; got != want {
		t.Errorf("dummy hash parameters %+v; want the users' %+v", got, want)
	}
	pr, err = p.AuthenticateToken(tok)
	if err != nil || pr.Name != "ci-bot" || pr.Method != "token" || pr.bind == ([32]byte{}) {
		t.Fatalf("token: %v %v", pr, err)
	}
	if _, err := p.AuthenticateToken(tok + "x"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	for _, tc := range []struct{ name, in, want string }{
		{"not json", `users: alice`, "invalid character"},
		{"unknown field", `{"grants":[],"roles":[]}`, "unknown field"},
		{"trailing", `{"grants":[]} {}`, "trailing"},
		{"bad hash", `{"users":{"alice":{"password":"plaintext"}},"grants":[]}`, `user "alice"`},
		{"bad user name", `{"users":{"-x":{"password":""}},"grants":[]}`, "user name"},
		{"short digest", `{"tokens":{"t":{"sha256":"abcd"}},"grants":[]}`, "64 hex"},
		{"dup digest", `{"tokens":{"t":{"sha256":"` + digest + `"},"u":{"sha256":"` + digest + `"}},"grants":[]}`, "same digest"},
		{"bad action", `{"grants":[{"principals":["a"],"namespaces":["n"],"actions":["delete"]}]}`, "unknown action"},
		{"empty grant", `{"grants":[{"principals":["a"],"namespaces":[],"actions":["read"]}]}`, "non-empty"},
		{"inner star", `{"grants":[{"principals":["a"],"namespaces":["a*b"],"actions":["read"]}]}`, "pattern"},
		{"bad principal", `{"grants":[{"principals":["a b"],"namespaces":["n"],"actions":["read"]}]}`, "principal"},
		{"too big", `{"grants":[]` + strings.Repeat(" ", MaxPolicySize) + `}`, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy(strings.NewReader(tc.in))
			if !errors.Is(err, ErrBadPolicy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrBadPolicy mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLoadPolicyMissingFile(t *testing.T) {
	_, err := LoadPolicy(t.TempDir() + "/nope.json")
	if err == nil || !strings.Contains(err.Error(), "nope.json") {
		t.Fatalf("err = %v; want one naming the file", err)
	}
}
