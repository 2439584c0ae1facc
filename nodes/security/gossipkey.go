package security

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"strings"
)

// maxGossipKeyFile bounds the size of a --gossip-key-file.
const maxGossipKeyFile = 1 << 10

// NewGossipKey returns a fresh 32-byte gossip key (AES-256-GCM) in standard
// base64, the format of a --gossip-key-file (`dialkv secret gossip-key`).
func NewGossipKey() (Secret, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("security: gossip key: %w", err)
	}
	return Secret(base64.StdEncoding.EncodeToString(b)), nil
}

// ParseGossipKey decodes a gossip key: standard base64 of 16, 24 or 32
// bytes (AES-128, -192 or -256 in GCM mode, memberlist's SecretKey),
// surrounding white space ignored. Errors never contain the key.
func ParseGossipKey(text string) (Secret, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil {
		return "", fmt.Errorf("security: %w: gossip key is not standard base64", ErrBadFlags)
	}
	switch len(b) {
	case 16, 24, 32:
		return Secret(b), nil
	}
	return "", fmt.Errorf("security: %w: gossip key has %d bytes, want 16, 24 or 32", ErrBadFlags, len(b))
}

// LoadGossipKey reads and decodes a --gossip-key-file (ParseGossipKey).
func LoadGossipKey(path string) (Secret, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("security: --gossip-key-file: %w", err)
	}
	if fi.Size() > maxGossipKeyFile {
		return "", fmt.Errorf("security: %w: --gossip-key-file %s: %d bytes, a key file is at most %d", ErrBadFlags, path, fi.Size(), maxGossipKeyFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("security: --gossip-key-file: %w", err)
	}
	k, err := ParseGossipKey(string(b))
	if err != nil {
		return "", fmt.Errorf("--gossip-key-file %s: %w", path, err)
	}
	return k, nil
}
