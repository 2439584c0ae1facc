package core

import (
	"bytes"
	"hash/fnv"
)

// HashTag returns the part of key that decides its shard, as Redis Cluster
// does: if key holds a '{' followed later by a '}' with at least one byte
// between them, only the bytes between the first '{' and the first '}' after
// it count ("{user42}:cart" and "{user42}:orders" share a shard); otherwise
// the whole key counts.
func HashTag(key []byte) []byte {
	open := bytes.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := bytes.IndexByte(key[open+1:], '}')
	if end <= 0 { // no '}' or "{}"
		return key
	}
	return key[open+1 : open+1+end]
}

// ShardOf returns the shard (0 <= s < shards) that owns key: FNV-1a of the
// key's hash tag, modulo shards.
func ShardOf(key []byte, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write(HashTag(key))
	return int(h.Sum32() % uint32(shards))
}
