package client

import (
	"context"
	"sync"
	"time"
)

// nsRefresh is how long the client goes before asking again for the
// namespace list when it meets a namespace it does not know.
const nsRefresh = 10 * time.Second

// nsCache remembers each namespace's strategy (from ListNamespaces), so
// that only requests any node can serve are spread over the nodes.
type nsCache struct {
	mu        sync.Mutex
	strategy  map[string]string
	fetchedAt time.Time
}

type noSpreadKey struct{}

// spreads reports whether a request with options co may go to any node:
// namespaces of the quorum and causal strategies (every node coordinates),
// and stale reads of raft namespaces. Local namespaces (each node has its
// own), other raft requests (the leader answers) and namespaces the client
// could not learn about stay on the client's sticky node. The first request
// to a namespace the client does not know asks a node for the namespace
// list (at most once per nsRefresh).
func (c *Client) spreads(ctx context.Context, co callOpts) bool {
	return c.cfg.slowFactor > 0 && c.anyNode(ctx, co)
}

// nsName is the namespace a request with options co goes to.
func (c *Client) nsName(co callOpts) string {
	ns := co.ns
	if ns == "" {
		ns = c.cfg.namespace
	}
	if ns == "" {
		ns = "default"
	}
	return ns
}

// anyNode reports whether any node may serve a request with options co
// (see spreads), whatever the node-choice settings.
func (c *Client) anyNode(ctx context.Context, co callOpts) bool {
	if len(c.addrs) < 2 || ctx.Value(noSpreadKey{}) != nil {
		return false
	}
	ns := c.nsName(co)
	st, ok := c.ns.lookup(ns)
	if !ok && c.ns.due(time.Now()) {
		lctx := context.WithValue(ctx, noSpreadKey{}, true)
		if specs, err := c.Session.ListNamespaces(With(lctx, NoRetry())); err == nil {
			m := make(map[string]string, len(specs))
			for _, sp := range specs {
				m[sp.Name] = sp.Strategy
			}
			c.ns.set(m)
			st, ok = m[ns]
		}
	}
	if !ok {
		return false
	}
	switch st {
	case "quorum", "causal":
		return true
	case "raft":
		return co.readMode == "stale"
	}
	return false
}

func (n *nsCache) lookup(ns string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.strategy[ns]
	return s, ok
}

// due reports whether the list may be fetched now, and if so marks it
// fetched (one caller fetches at a time).
func (n *nsCache) due(now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.fetchedAt.IsZero() && now.Sub(n.fetchedAt) < nsRefresh {
		return false
	}
	n.fetchedAt = now
	return true
}

func (n *nsCache) set(m map[string]string) {
	n.mu.Lock()
	n.strategy = m
	n.mu.Unlock()
}
