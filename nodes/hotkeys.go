package nodes

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dialkv/dialkv/core"
)

// hotKeys finds the most requested keys of a node with the Space-Saving
// algorithm (Metwally et al., 2005) over a sample of the requests: at most
// capacity counters; a key not tracked takes the counter of the least
// counted key, inheriting its count as its error bound. Counts halve every
// halfLife so the list shows what is hot now. Safe for concurrent use.
type hotKeys struct {
	every    uint64 // sample one request in every (at random: a counter would alias with periodic traffic)
	capacity int
	halfLife time.Duration

	mu      sync.Mutex
	entries map[string]*hotEntry
	decayed time.Time
}

type hotEntry struct {
	ns, key    string
	count, err float64
}

// HotKey is one entry of HOTKEYS: the estimated number of sampled requests
// (decayed) and the most the estimate may exceed the true count.
type HotKey struct {
	Namespace string
	Key       string
	Count     float64
	Error     float64
}

func newHotKeys(capacity int, every uint64, halfLife time.Duration) *hotKeys {
	return &hotKeys{every: max(every, 1), capacity: capacity, halfLife: halfLife, entries: map[string]*hotEntry{}}
}

// observe counts a request for key in namespace ns (sampled).
func (h *hotKeys) observe(ns string, key []byte, now time.Time) {
	if h == nil || (h.every > 1 && rand.Uint64N(h.every) != 0) {
		return
	}
	id := ns + "\x00" + string(key)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.decay(now)
	if e := h.entries[id]; e != nil {
		e.count++
		return
	}
	if len(h.entries) < h.capacity {
		h.entries[id] = &hotEntry{ns: ns, key: string(key), count: 1}
		return
	}
	var minID string
	var min *hotEntry
	for k, e := range h.entries {
		if min == nil || e.count < min.count {
			minID, min = k, e
		}
	}
	delete(h.entries, minID)
	h.entries[id] = &hotEntry{ns: ns, key: string(key), count: min.count + 1, err: min.count}
}

func (h *hotKeys) decay(now time.Time) {
	if h.decayed.IsZero() {
		h.decayed = now
		return
	}
	for h.halfLife > 0 && now.Sub(h.decayed) >= h.halfLife {
		for _, e := range h.entries {
			e.count /= 2
			e.err /= 2
		}
		h.decayed = h.decayed.Add(h.halfLife)
	}
}

// top returns the n most counted keys, highest first.
func (h *hotKeys) top(n int, now time.Time) []HotKey {
	h.mu.Lock()
	h.decay(now)
	out := make([]HotKey, 0, len(h.entries))
	for _, e := range h.entries {
		out = append(out, HotKey{Namespace: e.ns, Key: e.key, Count: e.count, Error: e.err})
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Namespace+out[i].Key < out[j].Namespace+out[j].Key
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// hotKeysCommand answers HOTKEYS [N] (any namespace, answered by the node
// itself): the N (default 10) most requested keys of single-key calls on
// this node, one line each: "NAMESPACE KEY ~COUNT (+-ERROR)", counts of
// sampled requests halving every 10 s.
func (n *Node) hotKeysCommand(cmd core.Command, now time.Time) (core.Reply, bool) {
	if !strings.EqualFold(cmd.Name, "HOTKEYS") {
		return core.Reply{}, false
	}
	num := 10
	if len(cmd.Args) > 1 {
		return core.ErrorReply(core.Errorf(core.CodeErr, "syntax: HOTKEYS [N]")), true
	}
	if len(cmd.Args) == 1 {
		v, err := strconv.Atoi(string(cmd.Args[0]))
		if err != nil || v <= 0 {
			return core.ErrorReply(core.Errorf(core.CodeErr, "HOTKEYS: N must be a positive integer")), true
		}
		num = v
	}
	var rs []core.Reply
	for _, k := range n.hot.top(num, now) {
		rs = append(rs, core.Bulk([]byte(fmt.Sprintf("%s %q ~%.0f (+-%.0f)", k.Namespace, k.Key, k.Count, k.Error))))
	}
	return core.Array(rs...), true
}
