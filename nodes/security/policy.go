package security

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"regexp"
	"sort"
	"strings"
)

// MaxPolicySize bounds a policy file (1 MiB).
const MaxPolicySize = 1 << 20

// ErrBadPolicy is wrapped by every policy parsing or validation error.
var ErrBadPolicy = errors.New("bad policy")

// PolicyFile is the JSON form of a policy (the --auth-file of dialkv node):
//
//	{
//	  "users":  {"alice": {"password": "$argon2id$v=19$m=19456,t=2,p=1$...$..."}},
//	  "tokens": {"ci-bot": {"sha256": "<64 hex digits>"}},
//	  "grants": [
//	    {"principals": ["alice"], "namespaces": ["default", "app-*"], "actions": ["read", "write"]},
//	    {"principals": ["ops"],   "namespaces": ["*"],                 "actions": ["admin"]},
//	    {"principals": ["*"],     "namespaces": ["public"],            "actions": ["read"]}
//	  ]
//	}
//
// A principal is a user name, a token name or the common name of a client
// certificate signed by the node's CA; one name may have several of these.
// Grants only add rights; there are no deny rules. A namespace pattern is a
// name, "*" (every namespace) or a prefix ending in "*". A principal "*"
// means every authenticated principal (never an anonymous request).
type PolicyFile struct {
	Users  map[string]UserEntry  `json:"users,omitempty"`
	Tokens map[string]TokenEntry `json:"tokens,omitempty"`
	Grants []Grant               `json:"grants"`
	// RevokedCerts are serial numbers (hex, as `openssl x509 -serial`
	// prints them; colons allowed) of client certificates that are
	// refused at the handshake and on every request of a connection
	// already open, although their CA signed them.
	RevokedCerts []string `json:"revoked_certs,omitempty"`
	// RevokedTokens are SHA-256 digests (64 hex digits) of bearer tokens
	// that are refused whatever name lists them: a leaked token stays
	// refused even if an entry for it is added back by mistake.
	RevokedTokens []string `json:"revoked_tokens,omitempty"`
	// RevokedUsers are user names whose password logins are refused,
	// while their entry (and hash) stays in the file.
	RevokedUsers []string `json:"revoked_users,omitempty"`
}

// UserEntry is one user: the argon2id PHC hash of the password.
type UserEntry struct {
	Password string `json:"password"`
}

// TokenEntry is one bearer token: the SHA-256 hex digest of the token.
type TokenEntry struct {
	SHA256 string `json:"sha256"`
}

// Grant gives principals actions on namespaces.
type Grant struct {
	Principals []string `json:"principals"`
	Namespaces []string `json:"namespaces"`
	Actions    []string `json:"actions"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$`)

// Policy is a validated policy: an Authenticator for passwords and tokens
// and an Authorizer. It is immutable and safe for concurrent use.
type Policy struct {
	users  map[string]passwordHash
	tokens map[[32]byte]string // digest -> token name
	// binds hold each credential's binding (see Principal.bind): a
	// session logged in with it stays valid only while the credential is
	// unchanged in the current policy.
	userBinds, tokenBinds map[string][32]byte
	revoked               map[string]bool // certificate serials, lower-case hex
	// revokedTokens and revokedUsers count the entries of revoked_tokens
	// and revoked_users (for Summary).
	revokedTokens, revokedUsers int
	grants                      []grant
	dummy                       passwordHash // verified for unknown users, so timing does not reveal them
}

type grant struct {
	principals []string
	namespaces []string
	actions    Action
}

var _ Authorizer = (*Policy)(nil)

// ParsePolicy reads and validates a JSON policy. Unknown fields, malformed
// hashes, bad names and empty grants are errors that name the offending
// entry; nothing secret is echoed.
func ParsePolicy(r io.Reader) (*Policy, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("security: read policy: %w", err)
	}
	if len(data) > MaxPolicySize {
		return nil, fmt.Errorf("security: %w: larger than %d bytes", ErrBadPolicy, MaxPolicySize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f PolicyFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("security: %w: %v", ErrBadPolicy, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("security: %w: trailing data after the JSON object", ErrBadPolicy)
	}
	return NewPolicy(f)
}

// LoadPolicy reads a policy file.
func LoadPolicy(path string) (*Policy, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("security: policy: %w", err)
	}
	defer fh.Close()
	p, err := ParsePolicy(fh)
	if err != nil {
		return nil, fmt.Errorf("%w (file %s)", err, path)
	}
	return p, nil
}

// NewPolicy validates f.
func NewPolicy(f PolicyFile) (*Policy, error) {
	bad := func(format string, args ...any) (*Policy, error) {
		return nil, fmt.Errorf("security: %w: "+format, append([]any{ErrBadPolicy}, args...)...)
	}
	p := &Policy{users: map[string]passwordHash{}, tokens: map[[32]byte]string{},
		userBinds: map[string][32]byte{}, tokenBinds: map[string][32]byte{}, revoked: map[string]bool{}}
	known := map[string]bool{}
	for _, name := range sortedKeys(f.Users) {
		if !nameRE.MatchString(name) {
			return bad("user name %q: want 1-128 of letters, digits and ._@:- starting with a letter or digit", name)
		}
		h, err := parsePasswordHash(f.Users[name].Password)
		if err != nil {
			return bad("user %q: %v", name, err)
		}
		p.users[name] = h
		p.userBinds[name] = credentialBind("password", name, f.Users[name].Password)
		known[name] = true
	}
	for _, name := range sortedKeys(f.Tokens) {
		if !nameRE.MatchString(name) {
			return bad("token name %q: want 1-128 of letters, digits and ._@:- starting with a letter or digit", name)
		}
		d, err := hex.DecodeString(f.Tokens[name].SHA256)
		if err != nil || len(d) != 32 {
			return bad("token %q: sha256 must be 64 hex digits", name)
		}
		var k [32]byte
		copy(k[:], d)
		if other, dup := p.tokens[k]; dup {
			return bad("tokens %q and %q have the same digest", other, name)
		}
		p.tokens[k] = name
		p.tokenBinds[name] = credentialBind("token", name, hex.EncodeToString(d))
		known[name] = true
	}
	for i, g := range f.Grants {
		if len(g.Principals) == 0 || len(g.Namespaces) == 0 || len(g.Actions) == 0 {
			return bad("grant %d: principals, namespaces and actions must all be non-empty", i+1)
		}
		var out grant
		for _, pr := range g.Principals {
			if pr != "*" && !nameRE.MatchString(pr) {
				return bad("grant %d: principal %q is not a valid name or \"*\"", i+1, pr)
			}
			out.principals = append(out.principals, pr)
		}
		for _, ns := range g.Namespaces {
			if ns == "" || strings.Contains(strings.TrimSuffix(ns, "*"), "*") {
				return bad("grant %d: namespace pattern %q: want a name, \"*\" or a prefix ending in \"*\"", i+1, ns)
			}
			out.namespaces = append(out.namespaces, ns)
		}
		for _, a := range g.Actions {
			act, err := ParseAction(a)
			if err != nil {
				return bad("grant %d: %v", i+1, err)
			}
			out.actions |= act
		}
		p.grants = append(p.grants, out)
	}
	for i, serial := range f.RevokedCerts {
		s, err := normalSerial(serial)
		if err != nil {
			return bad("revoked_certs entry %d: %v", i+1, err)
		}
		p.revoked[s] = true
	}
	// Revoked tokens and users are dropped, so that both a new login and
	// every session bound to them (Valid) are refused.
	for i, d := range f.RevokedTokens {
		b, err := hex.DecodeString(d)
		if err != nil || len(b) != 32 {
			return bad("revoked_tokens entry %d: want a sha256 of 64 hex digits", i+1)
		}
		var k [32]byte
		copy(k[:], b)
		if name, ok := p.tokens[k]; ok {
			delete(p.tokens, k)
			delete(p.tokenBinds, name)
		}
		p.revokedTokens++
	}
	for i, u := range f.RevokedUsers {
		if !nameRE.MatchString(u) {
			return bad("revoked_users entry %d: %q is not a valid user name", i+1, u)
		}
		delete(p.users, u)
		delete(p.userBinds, u)
		p.revokedUsers++
	}
	// A fixed dummy hash verified for unknown users, with the parameters
	// of a real user's hash (the first by name; the defaults when there is
	// none): an unknown user costs as much as a known one, whatever
	// parameters the policy's hashes were made with.
	params := DefaultHashParams
	if names := sortedKeys(p.users); len(names) > 0 {
		params = p.users[names[0]].p
	}
	p.dummy = passwordHash{p: params, salt: make([]byte, 16), key: make([]byte, params.KeyLen)}
	return p, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// AuthenticatePassword checks a user's password. A wrong password and an
// unknown user give the same error and take about the same time.
func (p *Policy) AuthenticatePassword(user string, password Secret) (Principal, error) {
	h, ok := p.users[user]
	if !ok {
		p.dummy.verify(password)
		return Principal{}, unauthenticated("wrong user name or password")
	}
	if !h.verify(password) {
		return Principal{}, unauthenticated("wrong user name or password")
	}
	return Principal{Name: user, Method: "password", bind: p.userBinds[user]}, nil
}

// AuthenticateToken checks a bearer token.
func (p *Policy) AuthenticateToken(token Secret) (Principal, error) {
	d, err := hex.DecodeString(TokenDigest(token))
	if err != nil {
		return Principal{}, unauthenticated("bad token")
	}
	var k [32]byte
	copy(k[:], d)
	for digest, name := range p.tokens {
		if subtle.ConstantTimeCompare(digest[:], k[:]) == 1 {
			return Principal{Name: name, Method: "token", bind: p.tokenBinds[name]}, nil
		}
	}
	return Principal{}, unauthenticated("unknown token")
}

// Authorize implements Authorizer: nil if some grant gives p the action on
// namespace ("" means "default"), or if p is a node (MethodNode, not
// revoked), else an *AuthError.
func (p *Policy) Authorize(pr Principal, namespace string, action Action) error {
	if pr.Name == "" {
		return unauthenticated("no credentials")
	}
	if err := p.Valid(pr); err != nil {
		return err
	}
	if pr.Method == MethodNode {
		// A node certificate (IsNodeCert) already replicates every
		// namespace on the peer port: it has admin everywhere, granted or
		// not.
		return nil
	}
	if namespace == "" {
		namespace = "default"
	}
	if action == 0 {
		action = Read
	}
	have := p.Rights(pr.Name, namespace)
	if have&Admin != 0 {
		have |= Read | Write
	}
	if have&action == action {
		return nil
	}
	return &AuthError{Kind: ErrForbidden, Principal: pr.Name, Namespace: namespace, Action: action}
}

// Rights are the actions granted to principal on namespace (Admin not
// expanded).
func (p *Policy) Rights(principal, namespace string) Action {
	var have Action
	for _, g := range p.grants {
		if matchAny(g.principals, principal, false) && matchAny(g.namespaces, namespace, true) {
			have |= g.actions
		}
	}
	return have
}

func matchAny(patterns []string, s string, prefix bool) bool {
	for _, pat := range patterns {
		if pat == "*" || pat == s {
			return true
		}
		if prefix {
			if pre, ok := strings.CutSuffix(pat, "*"); ok && strings.HasPrefix(s, pre) {
				return true
			}
		}
	}
	return false
}

// credentialBind is the binding of a credential: a digest of its kind,
// name and stored form (the password's argon2id hash, the token's
// digest). It reveals neither, and changes when the entry changes.
func credentialBind(kind, name, stored string) [32]byte {
	return sha256.Sum256([]byte(kind + "\x00" + name + "\x00" + stored))
}

// normalSerial parses a certificate serial number in hex (colons and a 0x
// prefix allowed) into lower-case hex without leading zeros, as
// big.Int.Text(16) prints x509.Certificate.SerialNumber.
func normalSerial(s string) (string, error) {
	h := strings.TrimPrefix(strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", "")), "0x")
	n, ok := new(big.Int).SetString(h, 16)
	if h == "" || !ok || n.Sign() < 0 {
		return "", fmt.Errorf("serial %q: want hex digits", s)
	}
	return n.Text(16), nil
}

// Valid reports whether the credential pr was authenticated with still
// holds in this policy: a password or token principal's user or token must
// exist unchanged (same hash or digest), and a certificate principal's
// serial must not be revoked. Principals of other methods are not checked.
// A revoked principal gets an *AuthError wrapping ErrUnauthenticated.
func (p *Policy) Valid(pr Principal) error {
	switch pr.Method {
	case "password":
		if b, ok := p.userBinds[pr.Name]; !ok || b != pr.bind {
			return unauthenticated("credentials revoked (user removed or password changed): log in again")
		}
	case "token":
		if b, ok := p.tokenBinds[pr.Name]; !ok || b != pr.bind {
			return unauthenticated("token revoked: log in again")
		}
	case "cert", MethodNode:
		if pr.serial != "" && p.revoked[pr.serial] {
			return unauthenticated("certificate revoked")
		}
	}
	return nil
}

// CertRevoked reports whether a certificate with this serial number is in
// the policy's revoked_certs.
func (p *Policy) CertRevoked(serial *big.Int) bool {
	return serial != nil && p.revoked[serial.Text(16)]
}

// Summary counts the policy's entries, for logs (never a secret).
func (p *Policy) Summary() PolicySummary {
	return PolicySummary{Users: len(p.users), Tokens: len(p.tokens), Grants: len(p.grants), RevokedCerts: len(p.revoked),
		RevokedTokens: p.revokedTokens, RevokedUsers: p.revokedUsers}
}

// PolicySummary counts a policy's entries (users and tokens in force,
// revoked ones not included).
type PolicySummary struct {
	Users, Tokens, Grants, RevokedCerts int
	RevokedTokens, RevokedUsers         int
}
