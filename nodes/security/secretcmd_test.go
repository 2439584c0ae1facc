package security

import (
	"bytes"
	"strings"
	"testing"
)

func TestSecretMain(t *testing.T) {
	var out, errb bytes.Buffer
	if code := SecretMain([]string{"password"}, strings.NewReader("hunter2-long\n"), &out, &errb); code != 0 {
		t.Fatalf("password: %d %s", code, errb.String())
	}
	if ok, err := VerifyPassword(strings.TrimSpace(out.String()), "hunter2-long"); !ok || err != nil {
		t.Fatalf("printed hash %q does not verify: %v", out.String(), err)
	}
	out.Reset()
	if code := SecretMain([]string{"token"}, nil, &out, &errb); code != 0 {
		t.Fatal(code)
	}
	lines := strings.Fields(out.String())
	if len(lines) != 2 || TokenDigest(Secret(lines[0])) != lines[1] {
		t.Fatalf("token output %q", out.String())
	}
	out.Reset()
	if code := SecretMain([]string{"gossip-key"}, nil, &out, &errb); code != 0 {
		t.Fatal(code)
	}
	if k, err := ParseGossipKey(out.String()); err != nil || len(k.Reveal()) != 32 {
		t.Fatalf("gossip-key output does not parse as a 32-byte key: %v", err)
	}
	for _, tc := range []struct {
		args []string
		in   string
		code int
	}{{nil, "", 2}, {[]string{"password"}, "\n", 1}, {[]string{"nope"}, "", 2}, {[]string{"--help"}, "", 0}} {
		if code := SecretMain(tc.args, strings.NewReader(tc.in), &out, &errb); code != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.args, code, tc.code)
		}
	}
}
