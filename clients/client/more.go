package client

import (
	"context"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// ScanRequest selects keys in byte order: those with Prefix, from Start
// (inclusive) to End (exclusive); empty fields are unbounded. Cursor is the
// Next of the previous page (nil: the first page).
type ScanRequest struct {
	Prefix, Start, End []byte
	Cursor             []byte
	Limit              int // 0: the node's default (100)
	KeysOnly           bool
}

// ScanPage is one page of a scan. Values[i] is the string value of Keys[i]
// (KindNil for other types; nil with KeysOnly); Next is the Cursor of the
// next page (nil when done).
type ScanPage struct {
	Keys   [][]byte
	Values []core.Reply
	Next   []byte
}

// Scan returns one page of keys; loop with req.Cursor = page.Next until
// Next is nil. Each key that exists throughout the scan is returned once.
func (s *Session) Scan(ctx context.Context, req ScanRequest) (ScanPage, error) {
	w := &gen.ScanRequest{Prefix: req.Prefix, StartKey: req.Start, EndKey: req.End, Cursor: req.Cursor}
	if req.Limit > 0 {
		l := int32(req.Limit)
		w.Limit = &l
	}
	if req.KeysOnly {
		t := true
		w.KeysOnly = &t
	}
	var page ScanPage
	_, err := s.invoke(ctx, true, func(ctx context.Context, conn *transport.Conn, o *gen.RequestOptions) (meta, error) {
		r, err := conn.Scan(ctx, o, w)
		if err != nil {
			return meta{}, err
		}
		page = ScanPage{Keys: r.Keys, Next: r.NextKey}
		if len(page.Next) == 0 {
			page.Next = nil
		}
		if r.Values != nil {
			if page.Values, err = repliesToCore(r.Values, len(r.Keys)); err != nil {
				return meta{}, err
			}
		}
		return meta{node: r.GetServedBy(), token: r.Token}, nil
	})
	return page, err
}

// IndexQuery is a secondary-index query (indexes are made with the
// IDX.CREATE command): keys whose field equals Value, or, when Value is nil,
// lies between Min and Max (ZRANGEBYSCORE syntax for number indexes,
// ZRANGEBYLEX syntax for string indexes; nil: unbounded).
type IndexQuery struct {
	Index           string
	Value, Min, Max []byte
	Limit           int    // 0: 100
	Cursor          []byte // Next of the previous page
}

// IndexPage is one page of an index query; Next is nil when done.
type IndexPage struct {
	Keys [][]byte
	Next []byte
}

// QueryIndex runs one page of an index query.
func (s *Session) QueryIndex(ctx context.Context, q IndexQuery) (IndexPage, error) {
	w := &gen.IndexQuery{Index: q.Index, Value: q.Value, Min: q.Min, Max: q.Max, Cursor: q.Cursor}
	if q.Limit > 0 {
		l := int32(q.Limit)
		w.Limit = &l
	}
	var page IndexPage
	_, err := s.invoke(ctx, true, func(ctx context.Context, conn *transport.Conn, o *gen.RequestOptions) (meta, error) {
		r, err := conn.IndexQuery(ctx, o, w)
		if err != nil {
			return meta{}, err
		}
		page = IndexPage{Keys: r.Keys}
		if len(r.NextCursor) > 0 {
			page.Next = r.NextCursor
		}
		return meta{node: r.GetServedBy(), token: r.Token}, nil
	})
	return page, err
}

// Publish sends payload to channel and returns how many subscriptions
// received it. It is not retried after an unknown outcome.
func (s *Session) Publish(ctx context.Context, channel string, payload []byte) (int64, error) {
	var n int64
	_, err := s.invoke(ctx, false, func(ctx context.Context, conn *transport.Conn, o *gen.RequestOptions) (meta, error) {
		r, err := conn.Publish(ctx, o, channel, payload)
		n = r
		return meta{}, err
	})
	return n, err
}

// Message is a published message received by a subscription.
type Message struct {
	Channel string
	Pattern string // the pattern that matched, for pattern subscriptions
	Payload []byte
}

// Subscription receives messages published to its channels and patterns.
// Subscriptions live on one node: Poll always asks that node.
type Subscription struct {
	s       *Session
	id      string
	addr    string
	Dropped int64 // messages the node dropped because the buffer was full
}

// Subscribe subscribes to channels and glob patterns.
func (s *Session) Subscribe(ctx context.Context, channels, patterns []string) (*Subscription, error) {
	sub := &Subscription{s: s}
	_, err := s.invoke(ctx, false, func(ctx context.Context, conn *transport.Conn, o *gen.RequestOptions) (meta, error) {
		id, err := conn.Subscribe(ctx, o, channels, patterns)
		sub.id, sub.addr = id, conn.Addr()
		return meta{}, err
	})
	if err != nil {
		return nil, err
	}
	return sub, nil
}

// ID is the node's subscription id.
func (sub *Subscription) ID() string { return sub.id }

// Poll waits up to wait for messages (long poll) and returns up to max of
// them (none if wait passes first).
func (sub *Subscription) Poll(ctx context.Context, max int, wait time.Duration) ([]Message, error) {
	c := sub.s.c
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) < wait+time.Second {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait+c.cfg.timeout)
		defer cancel()
	}
	conn, err := c.get(ctx, sub.addr)
	if err != nil {
		return nil, &Error{Code: CodeConnection, Msg: err.Error(), err: err}
	}
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	r, err := conn.Poll(ctx, sub.id, int32(max), int32(wait.Milliseconds()))
	if err != nil {
		e := fromWire(err, true)
		if e.err == nil {
			c.put(conn)
		} else {
			conn.Close()
		}
		return nil, e
	}
	c.put(conn)
	sub.Dropped += r.GetDropped()
	out := make([]Message, len(r.Messages))
	for i, m := range r.Messages {
		out[i] = Message{Channel: m.Channel, Pattern: m.GetPattern(), Payload: m.Payload}
	}
	return out, nil
}

// Close unsubscribes.
func (sub *Subscription) Close(ctx context.Context) error {
	c := sub.s.c
	conn, err := c.get(ctx, sub.addr)
	if err != nil {
		return &Error{Code: CodeConnection, Msg: err.Error(), err: err}
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(c.cfg.timeout))
	}
	if err := conn.Unsubscribe(ctx, sub.id); err != nil {
		e := fromWire(err, true)
		if e.err == nil {
			c.put(conn)
		} else {
			conn.Close()
		}
		return e
	}
	c.put(conn)
	return nil
}

// NamespaceSpec describes a namespace.
type NamespaceSpec struct {
	Name     string
	Strategy string
	Params   map[string]string
}

// CreateNamespace creates a namespace with a strategy ("local", and later
// "raft", "quorum", "causal") and its parameters.
func (s *Session) CreateNamespace(ctx context.Context, spec NamespaceSpec) error {
	_, err := s.invoke(ctx, false, func(ctx context.Context, conn *transport.Conn, _ *gen.RequestOptions) (meta, error) {
		return meta{}, conn.CreateNamespace(ctx, &gen.NamespaceSpec{Name: spec.Name, Strategy: spec.Strategy, Params: spec.Params})
	})
	return err
}

// DropNamespace deletes a namespace and its data.
func (s *Session) DropNamespace(ctx context.Context, name string) error {
	_, err := s.invoke(ctx, false, func(ctx context.Context, conn *transport.Conn, _ *gen.RequestOptions) (meta, error) {
		return meta{}, conn.DropNamespace(ctx, name)
	})
	return err
}

// ListNamespaces lists the namespaces.
func (s *Session) ListNamespaces(ctx context.Context) ([]NamespaceSpec, error) {
	var out []NamespaceSpec
	_, err := s.invoke(ctx, true, func(ctx context.Context, conn *transport.Conn, _ *gen.RequestOptions) (meta, error) {
		r, err := conn.ListNamespaces(ctx)
		if err != nil {
			return meta{}, err
		}
		out = make([]NamespaceSpec, len(r))
		for i, n := range r {
			out[i] = NamespaceSpec{Name: n.Name, Strategy: n.Strategy, Params: n.Params}
		}
		return meta{}, nil
	})
	return out, err
}
