package core

import (
	"fmt"
	"testing"
)

func TestHashTag(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"plain", "plain"},
		{"{user42}:cart", "user42"},
		{"x{user42}:orders", "user42"},
		{"{}:empty", "{}:empty"},
		{"{open", "{open"},
		{"a{b}{c}", "b"},
		{"a{{b}}", "{b"},
		{"", ""},
	} {
		if got := string(HashTag([]byte(tc.key))); got != tc.want {
			t.Errorf("HashTag(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
}

func TestShardOfHashTagsColocate(t *testing.T) {
	const shards = 8
	s := ShardOf([]byte("{user42}:cart"), shards)
	for _, k := range []string{"{user42}:orders", "{user42}", "pre{user42}post"} {
		if got := ShardOf([]byte(k), shards); got != s {
			t.Errorf("ShardOf(%q) = %d, want %d (same hash tag)", k, got, s)
		}
	}
	// Keys without tags spread over every shard.
	seen := map[int]bool{}
	for i := 0; i < 200; i++ {
		seen[ShardOf([]byte(fmt.Sprintf("key%d", i)), shards)] = true
	}
	if len(seen) != shards {
		t.Errorf("200 keys reached %d of %d shards", len(seen), shards)
	}
	if ShardOf([]byte("anything"), 1) != 0 {
		t.Error("one shard must be shard 0")
	}
}
