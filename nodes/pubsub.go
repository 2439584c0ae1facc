package nodes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	"github.com/dialkv/dialkv/core"
)

// hub is the node's pub/sub: who receives what is core's deterministic
// PubSub state (subscription ids are its client ids); the hub adds the
// delivery — a bounded queue per subscription, long-polled by clients.
// Messages reach the subscriptions of this node only (pub/sub is not
// replicated). A subscription not polled for ttl expires.
type hub struct {
	mu       sync.Mutex
	ps       *core.PubSub
	subs     map[string]*subscription
	ttl      time.Duration
	maxQueue int
}

type pubMsg struct {
	channel, pattern string
	payload          []byte
}

type subscription struct {
	id       string
	queue    []pubMsg
	dropped  int64
	lastPoll time.Time
	polling  int
	notify   chan struct{}
}

func newHub(ttl time.Duration, maxQueue int) *hub {
	return &hub{
		ps:       core.NewPubSub(),
		subs:     map[string]*subscription{},
		ttl:      ttl,
		maxQueue: maxQueue,
	}
}

func newSubID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// subscribe registers a subscription and returns its id.
func (h *hub) subscribe(channels, patterns []string, now time.Time) string {
	s := &subscription{id: newSubID(), lastPoll: now, notify: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[s.id] = s
	if len(channels) > 0 {
		h.ps.Subscribe(s.id, channels...)
	}
	if len(patterns) > 0 {
		h.ps.PSubscribe(s.id, patterns...)
	}
	return s.id
}

func (h *hub) removeLocked(s *subscription) {
	delete(h.subs, s.id)
	h.ps.Disconnect(s.id)
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// unsubscribe removes a subscription; false if there is none.
func (h *hub) unsubscribe(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.subs[id]
	if s == nil {
		return false
	}
	h.removeLocked(s)
	return true
}

// publish delivers payload to every matching subscription (once per
// matching subscription target, as in Redis) and returns the number of
// deliveries. A full queue drops its oldest message.
func (h *hub) publish(channel string, payload []byte) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	deliver := func(s *subscription, pattern string) {
		if len(s.queue) >= h.maxQueue {
			s.queue = s.queue[1:]
			s.dropped++
		}
		s.queue = append(s.queue, pubMsg{channel: channel, pattern: pattern, payload: payload})
		select {
		case s.notify <- struct{}{}:
		default:
		}
		n++
	}
	for _, r := range h.ps.Publish(channel) {
		if s := h.subs[r.Client]; s != nil {
			deliver(s, r.Pattern)
		}
	}
	return n
}

// poll waits up to wait for messages and returns up to max of them; ok is
// false if the subscription does not exist.
func (h *hub) poll(ctx context.Context, id string, max int, wait time.Duration, now func() time.Time) (msgs []pubMsg, dropped int64, ok bool) {
	if max <= 0 {
		max = 100
	}
	var timer *time.Timer
	for {
		h.mu.Lock()
		s := h.subs[id]
		if s == nil {
			h.mu.Unlock()
			return nil, 0, false
		}
		s.lastPoll = now()
		if len(s.queue) > 0 || wait <= 0 {
			k := min(max, len(s.queue))
			msgs = append(msgs, s.queue[:k]...)
			s.queue = s.queue[k:]
			if len(s.queue) == 0 {
				s.queue = nil
			}
			dropped, s.dropped = s.dropped, 0
			h.mu.Unlock()
			return msgs, dropped, true
		}
		s.polling++
		h.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		}
		expired := false
		select {
		case <-s.notify:
		case <-timer.C:
			expired = true
		case <-ctx.Done():
			expired = true
		}
		h.mu.Lock()
		s.polling--
		s.lastPoll = now()
		h.mu.Unlock()
		if expired {
			wait = 0
		}
	}
}

// sweep removes subscriptions not polled since now-ttl.
func (h *hub) sweep(now time.Time) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.subs {
		if s.polling == 0 && now.Sub(s.lastPoll) > h.ttl {
			h.removeLocked(s)
			n++
		}
	}
	return n
}

// count is the number of live subscriptions.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
