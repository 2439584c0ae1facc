package client

import (
	"bytes"
	"sync"

	"github.com/dialkv/dialkv/core"
)

// maxRoutes bounds the routing cache; a full cache is emptied and refills
// from the next redirects.
const maxRoutes = 4096

// routes is the client's routing cache, filled from NotLeader/Moved
// answers: for each namespace and hash tag (the key's shard decider under the
// raft strategy), the node that last took a request for it instead of
// redirecting; and per namespace the last node redirected to, tried first
// for keys not cached yet. Strategies that never redirect leave it empty.
type routes struct {
	mu    sync.Mutex
	byKey map[string]string // ns + "\x00" + hash tag -> address
	byNS  map[string]string // ns -> address
}

// routeKey is the cache key of a request on keys (the first key decides;
// "" when there is none).
func routeKey(ns string, keys [][]byte) string {
	if len(keys) == 0 {
		return ""
	}
	return ns + "\x00" + string(hashTag(keys[0]))
}

// hashTag is the part of key that decides its shard, as consistency/raft's
// HashTag (and Redis Cluster): the bytes between the first '{' and the first
// '}' after it when there is at least one, otherwise the whole key. (A copy,
// so that the client does not depend on Dragonboat.)
func hashTag(key []byte) []byte {
	open := bytes.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := bytes.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}

// lookup returns the cached address for a request ("" if none).
func (r *routes) lookup(ns, key string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.byKey[key]; ok && key != "" {
		return a
	}
	return r.byNS[ns]
}

// moved records that a request was redirected to addr.
func (r *routes) moved(ns, key, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey == nil || len(r.byKey) >= maxRoutes {
		r.byKey = map[string]string{}
	}
	if r.byNS == nil {
		r.byNS = map[string]string{}
	}
	if key != "" {
		r.byKey[key] = addr
	}
	r.byNS[ns] = addr
}

// forget drops cached routes to addr (it failed to answer).
func (r *routes) forget(ns, key, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byKey[key] == addr {
		delete(r.byKey, key)
	}
	if r.byNS[ns] == addr {
		delete(r.byNS, ns)
	}
}

// cmdsKey is the route key of commands (the first command with a key).
func cmdsKey(ns string, cmds ...core.Command) string {
	for _, c := range cmds {
		if keys := core.CommandKeys(c); len(keys) > 0 {
			return routeKey(ns, keys)
		}
	}
	return ""
}
