package security

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// fastParams keep tests quick; production uses DefaultHashParams.
var fastParams = HashParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func TestSecretNeverPrinted(t *testing.T) {
	const plain = "hunter2-very-secret"
	s := Secret(plain)
	type cfg struct {
		User     string
		Password Secret
	}
	c := cfg{User: "alice", Password: s}
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("login", "password", s, "cfg", c, "principal", Principal{Name: "alice", Method: "password"})
	}
	fmt.Fprintf(&buf, "%v %s %+v %#v %q", s, s, c, c, s)
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(j)
	buf.WriteString(fmt.Errorf("wrapped: %v", s).Error())
	out := buf.String()
	if strings.Contains(out, plain) {
		t.Fatalf("secret leaked: %s", out)
	}
	if !strings.Contains(out, Redacted) || !strings.Contains(out, "alice") {
		t.Fatalf("expected redacted secret and the user name in output: %s", out)
	}
	if s.Reveal() != plain {
		t.Fatal("Reveal lost the value")
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse", fastParams)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := HashPassword("correct horse", fastParams)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	if strings.Contains(h, "correct horse") {
		t.Fatal("hash contains the password")
	}
	for _, tc := range []struct {
		pw   Secret
		want bool
	}{{"correct horse", true}, {"correct hors", false}, {"", false}, {"correct horse ", false}} {
		ok, err := VerifyPassword(h, tc.pw)
		if err != nil || ok != tc.want {
			t.Errorf("VerifyPassword(%q) = %v, %v; want %v", tc.pw.Reveal(), ok, err, tc.want)
		}
	}
	if _, err := HashPassword("x", HashParams{}); err == nil {
		t.Error("zero parameters accepted")
	}
}

func TestParsePasswordHashErrors(t *testing.T) {
	good, _ := HashPassword("pw", fastParams)
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "want $argon2id"},
		{"bcrypt", "$2a$10$abcdefghijklmnopqrstuv", "want $argon2id"},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key, "not argon2id"},
		{"version", "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key, "version"},
		{"huge memory", "$argon2id$v=19$m=99999999,t=1,p=1$" + salt + "$" + key, "memory"},
		{"huge time", "$argon2id$v=19$m=64,t=1000,p=1$" + salt + "$" + key, "time"},
		{"zero threads", "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key, "positive"},
		{"order", "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key, "start with"},
		{"short salt", "$argon2id$v=19$m=64,t=1,p=1$YWJj$" + key, "salt"},
		{"bad base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$!!!", "hash must"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePasswordHash(tc.in)
			if !errors.Is(err, ErrBadHash) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want ErrBadHash mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := parsePasswordHash(good); err != nil {
		t.Fatalf("good hash rejected: %v", err)
	}
}

func TestTokens(t *testing.T) {
	tok, digest, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Reveal(), "dkv_") || len(digest) != 64 || TokenDigest(tok) != digest {
		t.Fatalf("token %q digest %q", tok.Reveal(), digest)
	}
	tok2, _, _ := NewToken()
	if tok2 == tok {
		t.Fatal("two tokens are equal")
	}
}
