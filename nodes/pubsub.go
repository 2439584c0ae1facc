package nodes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// hub is the node's pub/sub state: subscriptions with bounded queues,
// long-polled by clients. Messages are delivered to the subscriptions of
// this node only (pub/sub is not replicated). A subscription not polled for
// ttl expires.
type hub struct {
	mu       sync.Mutex
	subs     map[string]*subscription
	channels map[string]map[*subscription]struct{}
	patterns map[*subscription]struct{}
	ttl      time.Duration
	maxQueue int
}

type pubMsg struct {
	channel, pattern string
	payload          []byte
}

type subscription struct {
	id       string
	channels []string
	patterns []string
	queue    []pubMsg
	dropped  int64
	lastPoll time.Time
	polling  int
	notify   chan struct{}
}

func newHub(ttl time.Duration, maxQueue int) *hub {
	return &hub{
		subs:     map[string]*subscription{},
		channels: map[string]map[*subscription]struct{}{},
		patterns: map[*subscription]struct{}{},
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
	s := &subscription{id: newSubID(), channels: channels, patterns: patterns, lastPoll: now, notify: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[s.id] = s
	for _, c := range channels {
		m := h.channels[c]
		if m == nil {
			m = map[*subscription]struct{}{}
			h.channels[c] = m
		}
		m[s] = struct{}{}
	}
	if len(patterns) > 0 {
		h.patterns[s] = struct{}{}
	}
	return s.id
}

func (h *hub) removeLocked(s *subscription) {
	delete(h.subs, s.id)
	for _, c := range s.channels {
		if m := h.channels[c]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(h.channels, c)
			}
		}
	}
	delete(h.patterns, s)
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

// publish delivers payload to every matching subscription and returns how
// many received it. A full queue drops its oldest message.
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
	for s := range h.channels[channel] {
		deliver(s, "")
	}
	for s := range h.patterns {
		for _, p := range s.patterns {
			if globMatch(p, channel) {
				deliver(s, p)
				break
			}
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

// globMatch matches Redis-style glob patterns: * (any run), ? (any one
// byte), [abc], [a-z], [^a] and \ escapes.
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		if p < len(pattern) {
			switch c := pattern[p]; c {
			case '*':
				starP, starI = p, i
				p++
				continue
			case '?':
				p++
				i++
				continue
			case '[':
				if end, ok := classMatch(pattern, p, s[i]); ok {
					p = end
					i++
					continue
				}
			case '\\':
				if p+1 < len(pattern) && pattern[p+1] == s[i] {
					p += 2
					i++
					continue
				}
			default:
				if c == s[i] {
					p++
					i++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		p = starP + 1
		starI++
		i = starI
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// classMatch matches b against the class starting at pattern[p] == '['; it
// returns the index after the class and whether b matched. An unterminated
// class matches nothing.
func classMatch(pattern string, p int, b byte) (int, bool) {
	j := p + 1
	neg := j < len(pattern) && pattern[j] == '^'
	if neg {
		j++
	}
	matched := false
	for first := true; j < len(pattern) && (first || pattern[j] != ']'); first = false {
		lo := pattern[j]
		if lo == '\\' && j+1 < len(pattern) {
			j++
			lo = pattern[j]
		}
		hi := lo
		if j+2 < len(pattern) && pattern[j+1] == '-' && pattern[j+2] != ']' {
			hi = pattern[j+2]
			j += 2
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if b >= lo && b <= hi {
			matched = true
		}
		j++
	}
	if j >= len(pattern) {
		return 0, false
	}
	return j + 1, matched != neg
}
