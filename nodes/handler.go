package nodes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// handler implements the Thrift service on a node.
type handler struct {
	n     *Node
	reqID atomic.Uint64
	// batches holds *batchScratch for Execute on local namespaces.
	batches sync.Pool
}

// batchScratch is an `execute` batch's commands and requests, reused from
// one batch to the next when the namespace is local: Local applies a
// batch before it returns and keeps no reference to it (a replicated
// service may still hold its requests after a timeout, so theirs are not
// reused).
type batchScratch struct {
	cs   []core.Command
	reqs []consistency.Request
}

// maxScratchBatch: the scratch of a larger batch is not kept.
const maxScratchBatch = 4096

var _ gen.DialKV = (*handler)(nil)

// Limits of single API calls.
const (
	maxScanLimit     = 10000
	defaultScanLimit = 100
	maxPollWait      = 60 * time.Second
	maxSubTargets    = 1024
)

// deadline is the request's deadline from its options (or the node's
// default). A context carrying it is made only for services that need one
// (see doOne): the local strategy takes the deadline itself, which spares
// a context and a timer per request.
func (h *handler) deadline(o *gen.RequestOptions) time.Time {
	d := h.n.cfg.DefaultDeadline
	if ms := o.GetDeadlineMs(); ms > 0 {
		d = min(time.Duration(ms)*time.Millisecond, maxDeadline)
	}
	return time.Now().Add(d)
}

func (h *handler) ns(o *gen.RequestOptions) (*namespace, error) {
	ns := h.n.namespace(o.GetNs())
	if ns == nil {
		return nil, &gen.InvalidArgument{Message: fmt.Sprintf("NONAMESPACE no namespace %q", o.GetNs()), Code: "NONAMESPACE"}
	}
	return ns, nil
}

func (h *handler) request(o *gen.RequestOptions) consistency.Request {
	return consistency.Request{
		ID:     h.reqID.Add(1),
		Client: o.GetClientID(),
		Opts: consistency.Options{
			Read:   o.GetReadMode(),
			R:      int(o.GetR()),
			W:      int(o.GetW()),
			Strict: o.GetStrict(),
			Mode:   o.GetMode(),
		},
		Token: o.Token,
	}
}

// serviceErr maps a Service error to the API's exceptions.
func serviceErr(err error) error {
	var rd *consistency.Redirect
	switch {
	case errors.As(err, &rd):
		return &gen.NotLeader{Message: "MOVED " + rd.Error(), Address: rd.Addr}
	case errors.Is(err, consistency.ErrUnavailable):
		return &gen.Unavailable{Message: "UNAVAILABLE " + err.Error(), RetryAfterMs: 50}
	case errors.Is(err, consistency.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return &gen.Timeout{Message: "TIMEOUT " + err.Error()}
	}
	return fmt.Errorf("internal error: %w", err)
}

// outcome names an exception for the requests metric.
func outcome(err error) string {
	switch err.(type) {
	case nil:
		return "ok"
	case *gen.WrongType:
		return "wrong_type"
	case *gen.ConditionFailed:
		return "condition_failed"
	case *gen.ValueTooLarge:
		return "too_large"
	case *gen.InvalidArgument:
		return "invalid"
	case *gen.Unavailable:
		return "unavailable"
	case *gen.Timeout:
		return "timeout"
	case *gen.Corruption:
		return "corruption"
	case *gen.NotLeader:
		return "not_leader"
	case *gen.Unauthenticated:
		return "unauthenticated"
	case *gen.Forbidden:
		return "forbidden"
	}
	return "internal"
}

// served is the responses' served_by: the node's ID (never modified, so
// every response may point at it).
func (h *handler) served() *string { return &h.n.cfg.ID }

func (h *handler) Ping(ctx context.Context) (*gen.NodeInfo, error) {
	v, a := h.n.cfg.Version, h.n.Addr()
	return &gen.NodeInfo{ID: h.n.cfg.ID, Version: &v, Address: &a}, nil
}

func (h *handler) Call(ctx context.Context, o *gen.RequestOptions, cmd *gen.Command) (_ *gen.ExecuteResponse, err error) {
	start := time.Now()
	defer func() {
		if !transport.Abandoned(err) {
			h.n.metrics.observe("call", outcome(err), start)
		}
	}()
	if o == nil {
		o = &gen.RequestOptions{}
	}
	c, err := transport.CommandToCore(cmd)
	if err != nil {
		return nil, &gen.InvalidArgument{Message: "ERR " + err.Error(), Code: "ERR"}
	}
	if d, ok := transport.DeferredOf(ctx).(*deferredWrite); ok {
		// A raft write started on the event loop is done (raftasync.go).
		start = d.start
		return h.answerDeferred(d, c)
	}
	inline := transport.Inline(ctx)
	if inline && !core.KnownCommand(c.Name) {
		// Node commands (HOTKEYS, CLUSTER ...) may block: not on the loop.
		return nil, transport.ErrServeOnWorker
	}
	if r, ok := h.n.hotKeysCommand(c, start); ok {
		return &gen.ExecuteResponse{Replies: []*gen.Reply{transport.ReplyFromCore(r, nil)}, ServedBy: h.served()}, nil
	}
	if nc := h.n.cfg.NodeCommand; nc != nil {
		if r, ok := nc(c); ok {
			return &gen.ExecuteResponse{Replies: []*gen.Reply{transport.ReplyFromCore(r, nil)}, ServedBy: h.served()}, nil
		}
	}
	ns, err := h.ns(o)
	if err != nil {
		return nil, err
	}
	if inline && ns.local == nil {
		if h.startDeferred(ctx, o, ns, c, start) {
			return nil, transport.ErrDeferred // a raft write, proposed
		}
		return nil, transport.ErrNotInline // replicated: needs the network
	}
	if !core.IsReadOnly(c.Name) {
		if !h.n.fence.enter() {
			return nil, errFenced()
		}
		defer h.n.fence.exit()
	}
	dl := h.deadline(o)
	req := h.request(o)
	req.Cmd = &c
	resp, err := h.do(ctx, dl, ns, req)
	if err == transport.ErrServeOnWorker {
		return nil, err
	}
	return h.callAnswer(ns, c, start, resp, err)
}

// callAnswer is Call's answer to command c of namespace ns, first seen at
// start, once done (by h.do, or deferred: answerDeferred): the hot-key
// observation, then err (as answerErr converts it) or the reply.
func (h *handler) callAnswer(ns *namespace, c core.Command, start time.Time, resp consistency.Response, err error) (*gen.ExecuteResponse, error) {
	if len(c.Args) > 0 {
		h.n.hot.observe(ns.spec.Name, c.Args[0], start)
	}
	if err != nil {
		return nil, err
	}
	return &gen.ExecuteResponse{Replies: []*gen.Reply{transport.ReplyFromCore(resp.Reply, resp.Values)}, Token: resp.Token, ServedBy: h.served()}, nil
}

// DefaultMaxBatch is the default of Config.MaxBatch (--max-batch).
const DefaultMaxBatch = 10000

// checkBatch refuses a batch or transaction of n commands (and conditions)
// over the node's --max-batch, before any of it is decoded or run.
func (h *handler) checkBatch(n int) error {
	if n > h.n.cfg.MaxBatch {
		return &gen.InvalidArgument{Message: fmt.Sprintf("ERR batch of %d commands is over the limit of %d (--max-batch)", n, h.n.cfg.MaxBatch), Code: "ERR"}
	}
	return nil
}

func (h *handler) Execute(ctx context.Context, o *gen.RequestOptions, cmds []*gen.Command) (_ *gen.ExecuteResponse, err error) {
	start := time.Now()
	defer func() {
		if !transport.Abandoned(err) {
			h.n.metrics.observe("execute", outcome(err), start)
		}
	}()
	if o == nil {
		o = &gen.RequestOptions{}
	}
	if err := h.checkBatch(len(cmds)); err != nil {
		return nil, err
	}
	for i, c := range cmds {
		if c == nil { // (transport.CommandsToCore's error)
			return nil, &gen.InvalidArgument{Message: fmt.Sprintf("ERR transport: command %d: transport: missing command", i), Code: "ERR"}
		}
	}
	ns, err := h.ns(o)
	if err != nil {
		return nil, err
	}
	var sc *batchScratch
	if ns.local != nil && len(cmds) <= maxScratchBatch {
		sc, _ = h.batches.Get().(*batchScratch)
		if sc == nil {
			sc = &batchScratch{}
		}
		defer func() {
			clear(sc.cs)
			clear(sc.reqs)
			h.batches.Put(sc)
		}()
	} else {
		sc = &batchScratch{}
	}
	cs := slices.Grow(sc.cs[:0], len(cmds))[:len(cmds)]
	for i, c := range cmds {
		cs[i] = core.Command{Name: c.Name, Args: c.Argv}
	}
	if writes(cs) {
		if !h.n.fence.enter() {
			return nil, errFenced()
		}
		defer h.n.fence.exit()
	}
	dl := h.deadline(o)
	reqs := slices.Grow(sc.reqs[:0], len(cs))[:len(cs)]
	sc.cs, sc.reqs = cs, reqs
	for i := range cs {
		reqs[i] = h.request(o)
		reqs[i].Cmd = &cs[i]
	}
	var resps []consistency.Response
	if transport.Inline(ctx) {
		if ns.local == nil {
			return nil, transport.ErrNotInline // replicated: needs the network
		}
		if resps, err = tryLocal(ctx, ns.local, dl, reqs); err != nil {
			if err == errWouldBlock {
				return nil, transport.ErrServeOnWorker
			}
			return nil, serviceErr(err)
		}
	} else if ns.local != nil {
		if resps, err = ns.local.DoBatchBy(dl, reqs); err != nil {
			return nil, serviceErr(err)
		}
	} else if b, ok := ns.svc.(batcher); ok {
		ctx, cancel := context.WithDeadline(ctx, dl)
		defer cancel()
		if resps, err = b.DoBatch(ctx, reqs); err != nil {
			return nil, serviceErr(err)
		}
	} else {
		ctx, cancel := context.WithDeadline(ctx, dl)
		defer cancel()
		// One command after the other; a command the service could not
		// serve gets an error reply and the rest still run.
		resps = make([]consistency.Response, len(reqs))
		for i, r := range reqs {
			if len(resps) > 0 && i > 0 && resps[i-1].Token != nil {
				r.Token = resps[i-1].Token
			}
			resp, err := ns.svc.Do(ctx, r)
			if err != nil {
				resp.Reply = core.ErrorReply(batchErr(serviceErr(err)))
			}
			resps[i] = resp
		}
	}
	out := &gen.ExecuteResponse{ServedBy: h.served()}
	out.Replies = transport.RepliesFromCore(len(resps), func(i int) (core.Reply, [][]byte) { return resps[i].Reply, resps[i].Values })
	for _, r := range resps {
		if r.Token != nil {
			out.Token = r.Token
		}
	}
	return out, nil
}

// writes reports whether any of cs may write (the write fence gates it).
func writes(cs []core.Command) bool {
	for _, c := range cs {
		if !core.IsReadOnly(c.Name) {
			return true
		}
	}
	return false
}

// batchErr turns a request-level exception into a batch reply error.
func batchErr(err error) *core.Error {
	switch e := err.(type) {
	case *gen.NotLeader:
		return &core.Error{Code: "MOVED", Msg: e.Address}
	case *gen.Unavailable:
		return &core.Error{Code: "UNAVAILABLE", Msg: e.Message}
	case *gen.Timeout:
		return &core.Error{Code: "TIMEOUT", Msg: e.Message}
	}
	return &core.Error{Code: core.CodeIO, Msg: err.Error()}
}

func (h *handler) Transaction(ctx context.Context, o *gen.RequestOptions, conds []*gen.Condition, cmds []*gen.Command) (_ *gen.ExecuteResponse, err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("transaction", outcome(err), start) }()
	if o == nil {
		o = &gen.RequestOptions{}
	}
	if err := h.checkBatch(len(cmds) + len(conds)); err != nil {
		return nil, err
	}
	txn := core.Txn{Conds: make([]core.Condition, len(conds))}
	for i, c := range conds {
		if txn.Conds[i], err = transport.CondToCore(c); err != nil {
			return nil, &gen.InvalidArgument{Message: "ERR " + err.Error(), Code: "ERR"}
		}
	}
	if txn.Cmds, err = transport.CommandsToCore(cmds); err != nil {
		return nil, &gen.InvalidArgument{Message: "ERR " + err.Error(), Code: "ERR"}
	}
	ns, err := h.ns(o)
	if err != nil {
		return nil, err
	}
	if writes(txn.Cmds) {
		if !h.n.fence.enter() {
			return nil, errFenced()
		}
		defer h.n.fence.exit()
	}
	dl := h.deadline(o)
	req := h.request(o)
	req.Txn = &txn
	resp, err := h.do(ctx, dl, ns, req)
	if err != nil {
		return nil, err
	}
	out := &gen.ExecuteResponse{Replies: make([]*gen.Reply, len(resp.Reply.Array)), Token: resp.Token, ServedBy: h.served()}
	for i, r := range resp.Reply.Array {
		out.Replies[i] = transport.ReplyFromCore(r, nil)
	}
	return out, nil
}

// prefixEnd is the first key after every key with prefix p (nil: none).
func prefixEnd(p []byte) []byte {
	e := bytes.Clone(p)
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] < 0xff {
			e[i]++
			return e[:i+1]
		}
	}
	return nil
}

// scanCommand translates a ScanRequest into core's SCAN.RANGE.
func scanCommand(r *gen.ScanRequest) core.Command {
	lower, upper := r.StartKey, r.EndKey
	if len(r.Prefix) > 0 {
		if bytes.Compare(r.Prefix, lower) > 0 {
			lower = r.Prefix
		}
		if pe := prefixEnd(r.Prefix); pe != nil && (len(upper) == 0 || bytes.Compare(pe, upper) < 0) {
			upper = pe
		}
	}
	limit := int(r.GetLimit())
	if limit <= 0 {
		limit = defaultScanLimit
	}
	limit = min(limit, maxScanLimit)
	return core.Command{Name: "SCAN.RANGE", Args: [][]byte{
		nz(lower), nz(upper), nz(r.Cursor), []byte("COUNT"), strconv.AppendInt(nil, int64(limit), 10),
	}}
}

func nz(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (h *handler) Scan(ctx context.Context, o *gen.RequestOptions, r *gen.ScanRequest) (_ *gen.ScanResponse, err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("scan", outcome(err), start) }()
	if o == nil {
		o = &gen.RequestOptions{}
	}
	if r == nil {
		r = &gen.ScanRequest{}
	}
	ns, err := h.ns(o)
	if err != nil {
		return nil, err
	}
	dl := h.deadline(o)
	cursor, keys, token, err := h.cursorCommand(ctx, dl, ns, o, scanCommand(r))
	if err != nil {
		return nil, err
	}
	out := &gen.ScanResponse{Keys: keys, NextKey: cursor, ServedBy: h.served(), Token: token}
	if !r.GetKeysOnly() {
		out.Values = []*gen.Reply{}
		if len(out.Keys) > 0 {
			mget := core.Command{Name: "MGET", Args: out.Keys}
			req := h.request(o)
			if token != nil {
				req.Token = token
			}
			req.Cmd = &mget
			vr, err := h.do(ctx, dl, ns, req)
			if err != nil {
				return nil, err
			}
			for _, v := range vr.Reply.Array {
				out.Values = append(out.Values, transport.ReplyFromCore(v, nil))
			}
			if vr.Token != nil {
				out.Token = vr.Token
			}
		}
	}
	return out, nil
}

func (h *handler) IndexQuery(ctx context.Context, o *gen.RequestOptions, q *gen.IndexQuery) (_ *gen.IndexQueryResponse, err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("index_query", outcome(err), start) }()
	if o == nil {
		o = &gen.RequestOptions{}
	}
	if q == nil {
		return nil, &gen.InvalidArgument{Message: "ERR missing query", Code: "ERR"}
	}
	ns, err := h.ns(o)
	if err != nil {
		return nil, err
	}
	dl := h.deadline(o)
	cursor, keys, token, err := h.cursorCommand(ctx, dl, ns, o, indexCommand(q))
	if err != nil {
		return nil, err
	}
	return &gen.IndexQueryResponse{Keys: keys, NextCursor: cursor, ServedBy: h.served(), Token: token}, nil
}

// do runs one request on the namespace's service; a failed service call and
// an error reply both come back as the typed Thrift exception.
func (h *handler) do(ctx context.Context, dl time.Time, ns *namespace, req consistency.Request) (consistency.Response, error) {
	resp, err := doOne(ctx, dl, ns, req)
	if err == errWouldBlock {
		return resp, transport.ErrServeOnWorker
	}
	return resp, answerErr(resp, err)
}

// answerErr is a service's outcome as Call's error: err as serviceErr
// converts it, else an error reply as its exception; nil: answer resp.
func answerErr(resp consistency.Response, err error) error {
	if err != nil {
		return serviceErr(err)
	}
	if resp.Reply.IsError() {
		return transport.ExceptionFromCore(resp.Reply.Err)
	}
	return nil
}

// doOne runs one request on the namespace's service until dl.
func doOne(ctx context.Context, dl time.Time, ns *namespace, req consistency.Request) (consistency.Response, error) {
	if ns.local != nil {
		one := [1]consistency.Request{req}
		var rs []consistency.Response
		var err error
		if transport.Inline(ctx) {
			rs, err = tryLocal(ctx, ns.local, dl, one[:]) // errWouldBlock instead of waiting
		} else {
			rs, err = ns.local.DoBatchBy(dl, one[:])
		}
		if err != nil {
			return consistency.Response{}, err
		}
		return rs[0], nil
	}
	ctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	return ns.svc.Do(ctx, req)
}

// tryLocal runs reqs on the local strategy from the transport's event loop:
// errWouldBlock if the strategy's lock is taken; replies that must wait for
// a group commit's sync are held by the transport (transport.Hold) instead
// of waited for — the loop goes on serving other connections, and the
// syncer writes every reply held on a sync right after it. (A held
// reply is bounded by the server's frame timeout rather than the request's
// deadline; a failed sync closes the connection instead of answering
// TIMEOUT: either way the client sees the outcome as unknown.)
func tryLocal(ctx context.Context, l *Local, dl time.Time, reqs []consistency.Request) ([]consistency.Response, error) {
	resps, wait, err := l.TryDoBatchBy(dl, reqs)
	if err != nil || wait == nil || transport.Hold(ctx, wait) {
		return resps, err
	}
	return l.waitBy(dl, resps, wait)
}

// cursorCommand runs a command that replies [cursor, [key...]] (SCAN.RANGE,
// SCAN.PREFIX, IDX.QUERY); an empty cursor comes back as nil (done).
func (h *handler) cursorCommand(ctx context.Context, dl time.Time, ns *namespace, o *gen.RequestOptions, cmd core.Command) (cursor []byte, keys [][]byte, token []byte, err error) {
	req := h.request(o)
	req.Cmd = &cmd
	resp, err := h.do(ctx, dl, ns, req)
	if err != nil {
		return nil, nil, nil, err
	}
	a := resp.Reply.Array
	if len(a) != 2 {
		return nil, nil, nil, fmt.Errorf("internal error: %s replied %d elements", cmd.Name, len(a))
	}
	keys = make([][]byte, len(a[1].Array))
	for i, k := range a[1].Array {
		keys[i] = k.Str
	}
	if len(a[0].Str) > 0 {
		cursor = a[0].Str
	}
	return cursor, keys, resp.Token, nil
}

// indexCommand translates an IndexQuery into core's IDX.QUERY.
func indexCommand(q *gen.IndexQuery) core.Command {
	args := [][]byte{[]byte(q.Index)}
	if q.Value != nil {
		args = append(args, []byte("EQ"), q.Value)
	} else {
		lo, hi := q.Min, q.Max
		if lo == nil {
			lo = []byte("-")
		}
		if hi == nil {
			hi = []byte("+")
		}
		args = append(args, []byte("RANGE"), lo, hi)
	}
	limit := int(q.GetLimit())
	if limit <= 0 {
		limit = defaultScanLimit
	}
	args = append(args, []byte("LIMIT"), strconv.AppendInt(nil, int64(min(limit, maxScanLimit)), 10))
	if len(q.Cursor) > 0 {
		args = append(args, []byte("CURSOR"), q.Cursor)
	}
	return core.Command{Name: "IDX.QUERY", Args: args}
}

func (h *handler) Publish(ctx context.Context, o *gen.RequestOptions, channel string, payload []byte) (_ int64, err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("publish", outcome(err), start) }()
	return int64(h.n.hub.publish(channel, payload)), nil
}

func (h *handler) Subscribe(ctx context.Context, o *gen.RequestOptions, channels []string, patterns []string) (_ string, err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("subscribe", outcome(err), start) }()
	if len(channels)+len(patterns) == 0 {
		return "", &gen.InvalidArgument{Message: "ERR subscribe needs at least one channel or pattern", Code: "ERR"}
	}
	if len(channels)+len(patterns) > maxSubTargets {
		return "", &gen.InvalidArgument{Message: fmt.Sprintf("ERR at most %d channels and patterns per subscription", maxSubTargets), Code: "ERR"}
	}
	return h.n.hub.subscribe(channels, patterns, time.Now()), nil
}

func (h *handler) Poll(ctx context.Context, id string, max int32, waitMs int32) (_ *gen.PollResponse, err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("poll", outcome(err), start) }()
	wait := min(time.Duration(waitMs)*time.Millisecond, maxPollWait)
	msgs, dropped, ok := h.n.hub.poll(ctx, id, int(min(max, 10000)), wait, time.Now)
	if !ok {
		return nil, &gen.InvalidArgument{Message: fmt.Sprintf("NOSUBSCRIPTION no subscription %q (expired or unsubscribed)", id), Code: "NOSUBSCRIPTION"}
	}
	out := &gen.PollResponse{Messages: make([]*gen.Message, len(msgs))}
	if dropped > 0 {
		out.Dropped = &dropped
	}
	for i, m := range msgs {
		out.Messages[i] = &gen.Message{Channel: m.channel, Payload: m.payload}
		if m.pattern != "" {
			p := m.pattern
			out.Messages[i].Pattern = &p
		}
	}
	return out, nil
}

func (h *handler) Unsubscribe(ctx context.Context, id string) (err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("unsubscribe", outcome(err), start) }()
	if !h.n.hub.unsubscribe(id) {
		return &gen.InvalidArgument{Message: fmt.Sprintf("NOSUBSCRIPTION no subscription %q", id), Code: "NOSUBSCRIPTION"}
	}
	return nil
}

func (h *handler) CreateNamespace(ctx context.Context, spec *gen.NamespaceSpec) (err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("create_namespace", outcome(err), start) }()
	if spec == nil {
		return &gen.InvalidArgument{Message: "ERR missing namespace spec", Code: "ERR"}
	}
	return h.n.CreateNamespace(NamespaceSpec{Name: spec.Name, Strategy: spec.Strategy, Params: spec.Params})
}

func (h *handler) DropNamespace(ctx context.Context, name string) (err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("drop_namespace", outcome(err), start) }()
	return h.n.DropNamespace(name)
}

func (h *handler) ListNamespaces(ctx context.Context) (_ []*gen.NamespaceSpec, err error) {
	start := time.Now()
	defer func() { h.n.metrics.observe("list_namespaces", outcome(err), start) }()
	var out []*gen.NamespaceSpec
	for _, s := range h.n.specs() {
		out = append(out, &gen.NamespaceSpec{Name: s.Name, Strategy: s.Strategy, Params: s.Params})
	}
	return out, nil
}
