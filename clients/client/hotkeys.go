package client

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// hotTop is how many of each node's HOTKEYS entries the client asks for.
const hotTop = 16

// HotMinCount is the least guaranteed count (HOTKEYS' COUNT − ERROR, in
// sampled requests: a node samples one request in 16, counts halving every
// 10 s) that makes a key hot for WithHotKeySpreading.
const HotMinCount = 4

// hotSet is the client's list of hot keys (namespace + key), learned from
// the nodes' HOTKEYS answers, and the round-robin position of hot reads.
type hotSet struct {
	interval time.Duration
	ctx      context.Context // cancelled by Close: stops the refresh
	cancel   context.CancelFunc
	done     chan struct{} // closed when the refresh goroutine returned

	mu   sync.Mutex
	keys map[string]bool // ns + "\x00" + key

	next atomic.Uint64
}

// HotKey is a key the client counts as hot.
type HotKey struct {
	Namespace, Key string
}

func hotID(ns string, key []byte) string { return ns + "\x00" + string(key) }

func (h *hotSet) has(ns string, key []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.keys[hotID(ns, key)]
}

// pick returns the node of the next hot read: the nodes in turn.
func (h *hotSet) pick(addrs []string) string {
	return addrs[int((h.next.Add(1)-1)%uint64(len(addrs)))]
}

// HotKeys returns the keys the client counts as hot (sorted by namespace
// and key; empty without WithHotKeySpreading).
func (c *Client) HotKeys() []HotKey {
	if c.hot == nil {
		return nil
	}
	c.hot.mu.Lock()
	out := make([]HotKey, 0, len(c.hot.keys))
	for id := range c.hot.keys {
		ns, k, _ := strings.Cut(id, "\x00")
		out = append(out, HotKey{Namespace: ns, Key: k})
	}
	c.hot.mu.Unlock()
	sortHot(out)
	return out
}

func sortHot(hs []HotKey) {
	for i := 1; i < len(hs); i++ { // insertion sort: the list is short
		for j := i; j > 0 && (hs[j].Namespace < hs[j-1].Namespace || (hs[j].Namespace == hs[j-1].Namespace && hs[j].Key < hs[j-1].Key)); j-- {
			hs[j], hs[j-1] = hs[j-1], hs[j]
		}
	}
}

// RefreshHotKeys asks every node for its HOTKEYS now and replaces the
// client's hot-key list with the union of the entries whose guaranteed
// count is at least HotMinCount (WithHotKeySpreading does this every
// interval). When no node answers the list is kept and the error of the
// last node is returned; a node that fails is skipped.
func (c *Client) RefreshHotKeys(ctx context.Context) error {
	if c.hot == nil {
		return &Error{Code: CodeInvalid, Msg: "client: hot-key spreading is off (WithHotKeySpreading)"}
	}
	keys := map[string]bool{}
	answered := 0
	var last error
	for _, addr := range c.addrs {
		hs, err := c.nodeHotKeys(ctx, addr)
		if err != nil {
			last = fmt.Errorf("HOTKEYS at %s: %w", addr, err)
			continue
		}
		answered++
		for _, h := range hs {
			keys[hotID(h.ns, []byte(h.key))] = true
		}
	}
	if answered == 0 {
		return last
	}
	c.hot.mu.Lock()
	c.hot.keys = keys
	c.hot.mu.Unlock()
	return nil
}

type hotEntry struct {
	ns, key string
}

// nodeHotKeys runs HOTKEYS at the node addr (not through invoke: the
// question is for that node) and returns its hot entries.
func (c *Client) nodeHotKeys(ctx context.Context, addr string) ([]hotEntry, error) {
	if _, ok := ctx.Deadline(); !ok && c.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.timeout)
		defer cancel()
	}
	if down := c.health.acquire(addr); down != nil {
		return nil, down
	}
	conn, err := c.get(ctx, addr)
	if err != nil {
		c.health.failed(addr)
		return nil, dialError(err)
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	cmd := core.Command{Name: "HOTKEYS", Args: [][]byte{[]byte(strconv.Itoa(hotTop))}}
	resp, err := conn.Call(ctx, &gen.RequestOptions{}, transport.CommandFromCore(cmd))
	if err != nil {
		e := fromWire(err, true)
		if e.err == nil {
			c.health.answered(addr, -1)
			c.put(conn)
		} else {
			c.health.failed(addr)
			conn.Close()
		}
		return nil, e
	}
	c.health.answered(addr, -1)
	c.put(conn)
	if len(resp.Replies) != 1 {
		return nil, &Error{Code: CodeProtocol, Msg: fmt.Sprintf("HOTKEYS returned %d replies", len(resp.Replies))}
	}
	r, err := transport.ReplyToCore(resp.Replies[0])
	if err != nil {
		return nil, &Error{Code: CodeProtocol, Msg: err.Error()}
	}
	if r.IsError() {
		return nil, fromCore(r.Err)
	}
	var out []hotEntry
	for _, line := range r.Array {
		ns, key, guaranteed, err := parseHotLine(string(line.Str))
		if err != nil {
			return nil, &Error{Code: CodeProtocol, Msg: err.Error()}
		}
		if guaranteed >= HotMinCount {
			out = append(out, hotEntry{ns: ns, key: key})
		}
	}
	return out, nil
}

// parseHotLine parses one HOTKEYS line, `NAMESPACE "KEY" ~COUNT (+-ERROR)`,
// and returns COUNT − ERROR.
func parseHotLine(line string) (ns, key string, guaranteed float64, err error) {
	ns, rest, ok := strings.Cut(line, " ")
	if !ok {
		return "", "", 0, fmt.Errorf("HOTKEYS line %q: no key", line)
	}
	q, err := strconv.QuotedPrefix(rest)
	if err != nil {
		return "", "", 0, fmt.Errorf("HOTKEYS line %q: key: %w", line, err)
	}
	if key, err = strconv.Unquote(q); err != nil {
		return "", "", 0, fmt.Errorf("HOTKEYS line %q: key: %w", line, err)
	}
	var count, errb float64
	if _, err := fmt.Sscanf(rest[len(q):], " ~%g (+-%g)", &count, &errb); err != nil {
		return "", "", 0, fmt.Errorf("HOTKEYS line %q: counts: %w", line, err)
	}
	return ns, key, count - errb, nil
}

// refreshHotKeys refreshes the hot-key list every interval until Close.
func (c *Client) refreshHotKeys() {
	defer close(c.hot.done)
	t := time.NewTicker(c.hot.interval)
	defer t.Stop()
	for {
		select {
		case <-c.hot.ctx.Done():
			return
		case <-t.C:
			_ = c.RefreshHotKeys(c.hot.ctx) // a failed refresh keeps the list; the next one retries
		}
	}
}
