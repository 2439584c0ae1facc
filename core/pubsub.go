package core

import "sort"

// PubSub is publish/subscribe as deterministic state: who is subscribed to
// which channels and patterns. Publish returns the receivers; the node layer
// does the delivery. Clients are named by opaque ids. Patterns are Redis
// glob-style (*, ?, [abc], [^a], [a-z], \x). Like every core type it is not
// safe for concurrent use.
type PubSub struct {
	channels map[string]map[string]struct{} // channel -> clients
	patterns map[string]map[string]struct{} // pattern -> clients
	clients  map[string]*psClient
}

type psClient struct {
	channels map[string]struct{}
	patterns map[string]struct{}
}

func (c *psClient) count() int { return len(c.channels) + len(c.patterns) }

// Receiver is one delivery of a published message: the client, and the
// pattern that matched ("" for a channel subscription). A client that is
// subscribed to a channel and to matching patterns receives it once per
// subscription, as in Redis.
type Receiver struct {
	Client  string
	Pattern string
}

// NewPubSub returns an empty PubSub.
func NewPubSub() *PubSub {
	return &PubSub{
		channels: map[string]map[string]struct{}{},
		patterns: map[string]map[string]struct{}{},
		clients:  map[string]*psClient{},
	}
}

func (p *PubSub) client(id string) *psClient {
	c, ok := p.clients[id]
	if !ok {
		c = &psClient{channels: map[string]struct{}{}, patterns: map[string]struct{}{}}
		p.clients[id] = c
	}
	return c
}

func addSub(m map[string]map[string]struct{}, name, client string) {
	s, ok := m[name]
	if !ok {
		s = map[string]struct{}{}
		m[name] = s
	}
	s[client] = struct{}{}
}

func removeSub(m map[string]map[string]struct{}, name, client string) {
	if s, ok := m[name]; ok {
		delete(s, client)
		if len(s) == 0 {
			delete(m, name)
		}
	}
}

// Subscribe subscribes client to channels and returns, for each, the
// client's subscription count after it (Redis's reply).
func (p *PubSub) Subscribe(client string, channels ...string) []int {
	c := p.client(client)
	out := make([]int, len(channels))
	for i, ch := range channels {
		c.channels[ch] = struct{}{}
		addSub(p.channels, ch, client)
		out[i] = c.count()
	}
	return out
}

// PSubscribe subscribes client to patterns.
func (p *PubSub) PSubscribe(client string, patterns ...string) []int {
	c := p.client(client)
	out := make([]int, len(patterns))
	for i, pat := range patterns {
		c.patterns[pat] = struct{}{}
		addSub(p.patterns, pat, client)
		out[i] = c.count()
	}
	return out
}

// Unsubscribe removes channel subscriptions (all of the client's when none
// are named) and returns the channels removed, sorted, with the count left
// after each.
func (p *PubSub) Unsubscribe(client string, channels ...string) ([]string, []int) {
	return p.unsub(client, false, channels)
}

// PUnsubscribe removes pattern subscriptions like Unsubscribe.
func (p *PubSub) PUnsubscribe(client string, patterns ...string) ([]string, []int) {
	return p.unsub(client, true, patterns)
}

func (p *PubSub) unsub(client string, pattern bool, names []string) ([]string, []int) {
	c, ok := p.clients[client]
	if !ok {
		return names, make([]int, len(names))
	}
	mine, global := c.channels, p.channels
	if pattern {
		mine, global = c.patterns, p.patterns
	}
	if len(names) == 0 {
		for n := range mine {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	counts := make([]int, len(names))
	for i, n := range names {
		delete(mine, n)
		removeSub(global, n, client)
		counts[i] = c.count()
	}
	if c.count() == 0 {
		delete(p.clients, client)
	}
	return names, counts
}

// Disconnect drops every subscription of client.
func (p *PubSub) Disconnect(client string) {
	p.unsub(client, false, nil)
	p.unsub(client, true, nil)
}

// Publish returns the receivers of a message on channel, sorted by
// (pattern, client) with channel subscribers ("" pattern) first.
func (p *PubSub) Publish(channel string) []Receiver {
	var out []Receiver
	for c := range p.channels[channel] {
		out = append(out, Receiver{Client: c})
	}
	for pat, clients := range p.patterns {
		if !GlobMatch(pat, channel) {
			continue
		}
		for c := range clients {
			out = append(out, Receiver{Client: c, Pattern: pat})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pattern != out[j].Pattern {
			return out[i].Pattern < out[j].Pattern
		}
		return out[i].Client < out[j].Client
	})
	return out
}

// Channels returns the active channels (with at least one subscriber)
// matching pattern ("" = all), sorted, as PUBSUB CHANNELS.
func (p *PubSub) Channels(pattern string) []string {
	var out []string
	for ch := range p.channels {
		if pattern == "" || GlobMatch(pattern, ch) {
			out = append(out, ch)
		}
	}
	sort.Strings(out)
	return out
}

// NumSub returns the number of subscribers of channel.
func (p *PubSub) NumSub(channel string) int { return len(p.channels[channel]) }

// NumPat returns the number of distinct patterns subscribed to.
func (p *PubSub) NumPat() int { return len(p.patterns) }

// GlobMatch reports whether s matches the Redis glob pattern: * any
// sequence, ? any byte, [abc] [^abc] [a-z] classes, \ escapes the next
// byte. Unlike path.Match, '/' is an ordinary byte.
func GlobMatch(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 1 && pattern[1] == '*' {
				pattern = pattern[1:]
			}
			if len(pattern) == 1 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if GlobMatch(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if len(s) == 0 {
				return false
			}
			s = s[1:]
			pattern = pattern[1:]
		case '[':
			if len(s) == 0 {
				return false
			}
			pattern = pattern[1:]
			not := len(pattern) > 0 && pattern[0] == '^'
			if not {
				pattern = pattern[1:]
			}
			match := false
			for len(pattern) > 0 && pattern[0] != ']' {
				switch {
				case pattern[0] == '\\' && len(pattern) >= 2:
					if pattern[1] == s[0] {
						match = true
					}
					pattern = pattern[2:]
				case len(pattern) >= 3 && pattern[1] == '-':
					lo, hi := pattern[0], pattern[2]
					if lo > hi {
						lo, hi = hi, lo
					}
					if s[0] >= lo && s[0] <= hi {
						match = true
					}
					pattern = pattern[3:]
				default:
					if pattern[0] == s[0] {
						match = true
					}
					pattern = pattern[1:]
				}
			}
			if len(pattern) > 0 {
				pattern = pattern[1:] // the ']'
			}
			if match == not {
				return false
			}
			s = s[1:]
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if len(s) == 0 || pattern[0] != s[0] {
				return false
			}
			s = s[1:]
			pattern = pattern[1:]
		}
	}
	return len(s) == 0
}
