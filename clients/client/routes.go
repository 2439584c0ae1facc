package client

import (
	"regexp"
	"strconv"
	"sync"

	"github.com/dialkv/dialkv/core"
)

// maxShards bounds the shard count a redirect may announce.
const maxShards = 1 << 16

// routes is the client's routing cache, filled from NotLeader/Moved
// answers. A raft node's redirect names the shard and the shard count
// ("... shard 2 of 3"), so the cache keeps, per namespace, the leader of
// each shard seen and sends a request to the leader of its key's shard
// (core.ShardOf, which the raft strategy uses too). Per
// namespace it also keeps the last node redirected to, tried first when the
// key's shard is not known (or the redirect named none). Strategies that
// never redirect leave it empty.
type routes struct {
	mu   sync.Mutex
	byNS map[string]*nsRoutes
}

type nsRoutes struct {
	last   string   // last node redirected to
	shards []string // leader address per shard ("" unknown); nil: count unknown
}

// shardRe finds the shard a redirect names in its message.
var shardRe = regexp.MustCompile(`shard (\d+) of (\d+)`)

// redirectShard parses "shard S of N" out of a redirect's message.
func redirectShard(msg string) (shard, count int, ok bool) {
	m := shardRe.FindStringSubmatch(msg)
	if m == nil {
		return 0, 0, false
	}
	s, err1 := strconv.Atoi(m[1])
	n, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil || n < 1 || n > maxShards || s < 0 || s >= n {
		return 0, 0, false
	}
	return s, n, true
}

// lookup returns the cached address for a request on key in ns ("" if
// none; key nil: a keyless request).
func (r *routes) lookup(ns string, key []byte) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	nr := r.byNS[ns]
	if nr == nil {
		return ""
	}
	if key != nil && nr.shards != nil {
		if a := nr.shards[core.ShardOf(key, len(nr.shards))]; a != "" {
			return a
		}
	}
	return nr.last
}

// moved records that a request on key in ns was redirected to addr with
// message msg.
func (r *routes) moved(ns string, key []byte, addr, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byNS == nil {
		r.byNS = map[string]*nsRoutes{}
	}
	nr := r.byNS[ns]
	if nr == nil {
		nr = &nsRoutes{}
		r.byNS[ns] = nr
	}
	nr.last = addr
	if s, n, ok := redirectShard(msg); ok {
		if len(nr.shards) != n {
			nr.shards = make([]string, n)
		}
		nr.shards[s] = addr
	}
}

// forget drops cached routes to addr (it failed to answer).
func (r *routes) forget(ns, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	nr := r.byNS[ns]
	if nr == nil {
		return
	}
	if nr.last == addr {
		nr.last = ""
	}
	for i, a := range nr.shards {
		if a == addr {
			nr.shards[i] = ""
		}
	}
}

// routeKey is the key that routes commands: the first key of the first
// command that has one (nil: none).
func routeKey(cmds ...core.Command) []byte {
	for _, c := range cmds {
		if keys := core.CommandKeys(c); len(keys) > 0 {
			return keys[0]
		}
	}
	return nil
}
