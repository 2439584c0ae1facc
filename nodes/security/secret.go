package security

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Redacted is what a Secret prints, logs and marshals as.
const Redacted = "[REDACTED]"

// Secret is a password, token or private-key passphrase. It never shows
// itself: String, GoString, LogValue and MarshalJSON all give Redacted, so a
// Secret that reaches a log line, an error message or a metric label leaks
// nothing. Reveal returns the value for the one place that needs it.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String returns Redacted.
func (s Secret) String() string { return Redacted }

// GoString returns Redacted (for %#v).
func (s Secret) GoString() string { return Redacted }

// LogValue returns Redacted.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalJSON returns "[REDACTED]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText returns Redacted.
func (s Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

var (
	_ slog.LogValuer = Secret("")
	_ fmt.Stringer   = Secret("")
	_ fmt.GoStringer = Secret("")
)

// HashParams are argon2id parameters. Memory is in KiB.
type HashParams struct {
	Memory  uint32
	Time    uint32
	Threads uint8
	SaltLen int
	KeyLen  int
}

// DefaultHashParams follow the OWASP password-storage recommendation for
// argon2id (19 MiB, 2 passes, 1 lane): one verification costs tens of
// milliseconds, which is why it happens once per connection, not per
// request.
var DefaultHashParams = HashParams{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Limits on parameters accepted from a policy file, so that a bad file
// cannot make verification take gigabytes or minutes.
const (
	maxHashMemory  = 1 << 20 // 1 GiB in KiB
	maxHashTime    = 16
	maxHashThreads = 16
)

// ErrBadHash is wrapped by errors about a malformed password hash string.
var ErrBadHash = errors.New("malformed password hash")

// HashPassword hashes password with argon2id and a fresh random salt, in
// the PHC string format ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash").
func HashPassword(password Secret, p HashParams) (string, error) {
	if p.Memory == 0 || p.Time == 0 || p.Threads == 0 || p.SaltLen < 8 || p.KeyLen < 16 {
		return "", fmt.Errorf("security: hash parameters too weak: %+v", p)
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("security: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password.Reveal()), salt, p.Time, p.Memory, p.Threads, uint32(p.KeyLen))
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// passwordHash is a parsed PHC argon2id string.
type passwordHash struct {
	p         HashParams
	salt, key []byte
}

// parsePasswordHash parses and bounds-checks a PHC argon2id string.
func parsePasswordHash(s string) (passwordHash, error) {
	bad := func(why string) (passwordHash, error) {
		return passwordHash{}, fmt.Errorf("security: %w: %s", ErrBadHash, why)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return bad("want $argon2id$v=19$m=..,t=..,p=..$salt$hash")
	}
	if parts[1] != "argon2id" {
		return bad(fmt.Sprintf("algorithm %q is not argon2id", parts[1]))
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad(fmt.Sprintf("version %q is not v=%d", parts[2], argon2.Version))
	}
	var h passwordHash
	kv := strings.Split(parts[3], ",")
	if len(kv) != 3 {
		return bad("parameters must be m=..,t=..,p=..")
	}
	for i, want := range []string{"m=", "t=", "p="} {
		v, ok := strings.CutPrefix(kv[i], want)
		if !ok {
			return bad(fmt.Sprintf("parameter %d must start with %q", i+1, want))
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return bad(fmt.Sprintf("parameter %q is not a positive integer", kv[i]))
		}
		switch i {
		case 0:
			if n > maxHashMemory {
				return bad(fmt.Sprintf("memory %d KiB exceeds %d", n, maxHashMemory))
			}
			h.p.Memory = uint32(n)
		case 1:
			if n > maxHashTime {
				return bad(fmt.Sprintf("time %d exceeds %d", n, maxHashTime))
			}
			h.p.Time = uint32(n)
		case 2:
			if n > maxHashThreads {
				return bad(fmt.Sprintf("threads %d exceeds %d", n, maxHashThreads))
			}
			h.p.Threads = uint8(n)
		}
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > 64 {
		return bad("salt must be 8..64 bytes of unpadded base64")
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return bad("hash must be 16..64 bytes of unpadded base64")
	}
	h.p.SaltLen, h.p.KeyLen = len(h.salt), len(h.key)
	return h, nil
}

// verify reports whether password matches, in time independent of where
// the first differing byte is.
func (h passwordHash) verify(password Secret) bool {
	key := argon2.IDKey([]byte(password.Reveal()), h.salt, h.p.Time, h.p.Memory, h.p.Threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}

// VerifyPassword reports whether password matches a PHC argon2id hash.
func VerifyPassword(hash string, password Secret) (bool, error) {
	h, err := parsePasswordHash(hash)
	if err != nil {
		return false, err
	}
	return h.verify(password), nil
}

// NewToken returns a fresh bearer token ("dkv_" and 32 random bytes in
// base64url) and the SHA-256 hex digest to put in the policy file. Tokens
// carry 256 bits of entropy, so a fast unsalted hash is enough to keep a
// stolen policy file from revealing them.
func NewToken() (token Secret, digest string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("security: token: %w", err)
	}
	t := "dkv_" + base64.RawURLEncoding.EncodeToString(b)
	return Secret(t), TokenDigest(Secret(t)), nil
}

// TokenDigest is the SHA-256 hex digest of a token, as stored in a policy.
func TokenDigest(token Secret) string {
	d := sha256.Sum256([]byte(token.Reveal()))
	return hex.EncodeToString(d[:])
}
