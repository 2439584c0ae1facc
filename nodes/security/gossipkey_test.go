package security

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseGossipKey(t *testing.T) {
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	for _, tc := range []struct {
		name, text string
		size       int // 0: error
	}{
		{"16 bytes", b64(16), 16},
		{"24 bytes", b64(24), 24},
		{"32 bytes with newline", b64(32) + "\n", 32},
		{"15 bytes", b64(15), 0},
		{"64 bytes", b64(64), 0},
		{"not base64", "not base64!", 0},
		{"empty", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseGossipKey(tc.text)
			if tc.size == 0 {
				if !errors.Is(err, ErrBadFlags) {
					t.Fatalf("err = %v, want ErrBadFlags", err)
				}
				if tc.text != "" && strings.Contains(err.Error(), strings.TrimSpace(tc.text)) {
					t.Fatalf("error echoes the key: %v", err)
				}
				return
			}
			if err != nil || len(k.Reveal()) != tc.size {
				t.Fatalf("= %d bytes, %v; want %d", len(k.Reveal()), err, tc.size)
			}
		})
	}
}

func TestLoadGossipKeyFlag(t *testing.T) {
	dir := t.TempDir()
	k, err := NewGossipKey()
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(good, []byte(k.Reveal()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := (&Flags{GossipKeyFile: good}).Load(1)
	if err != nil || len(s.GossipKey.Reveal()) != 32 {
		t.Fatalf("Load = %d-byte key, %v", len(s.GossipKey.Reveal()), err)
	}
	if _, err := (&Flags{GossipKeyFile: filepath.Join(dir, "missing")}).Load(1); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
