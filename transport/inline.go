package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
)

// Serving on the event loop ("inline"). In epoll mode a server configured
// with ServerConfig.InlineMethods serves a small request of one of those
// methods on its event-loop goroutine itself, between two epoll_waits,
// instead of handing the connection to a worker goroutine: a single
// operation then costs no goroutine wake-up, no channel hand-off and no
// scheduling delay. The loop must never block, so the handler is told
// (Inline(ctx) is true) and, when the request would block — it needs the
// network, a sync, a lock someone else holds — it returns ErrServeOnWorker
// before doing anything with an effect. The transport then drops whatever
// the processor wrote for that request, keeps the request and everything
// after it on the connection, and hands the connection to a worker
// goroutine, which serves the same request again, this time with a context
// on which Inline is false. Replies keep their order: the replies of the
// requests served inline are written before the hand-off.
//
// A request served on the loop whose reply may only be sent once something
// has finished — a write under fsync=always, answered after its group
// commit's sync — calls Hold instead of waiting: the loop moves on to the
// next ready connection, and the reply (with the replies before it in the
// same read) is written when the Waiter's wait is over. Every connection
// held on the same Waiter is finished by the goroutine that ends the wait
// (the group commit's syncer), right after it ends it, with one write per
// connection that does not wait: a group commit costs no goroutine and no
// wake-up of its own for its replies. (A reply the socket cannot take at
// once is finished by a goroutine of its own, so a slow client never holds
// up the syncer.) The rest of the connection's input is served after the
// reply, by a worker.

// ErrServeOnWorker is what a handler returns, when Inline(ctx) is true, for
// a request it cannot serve without blocking; it must not have changed
// anything. (It is the Thrift library's ErrAbandonRequest, for which the
// generated processors write no reply.)
var ErrServeOnWorker error = thrift.ErrAbandonRequest

// ErrNotInline is ErrServeOnWorker for a request that could never be
// served on the event loop, whoever else is running (it needs the network:
// a replicated namespace's write waits for its log to commit). It is
// handled as ErrServeOnWorker, and the transport also expects the next
// requests of the same connection to be alike (a client's connection
// serves one namespace): the next notInlineSkip times the connection is
// readable, the event loop hands it straight to a worker, which reads and
// serves it, instead of reading and decoding each request on the loop only
// to drop it, and having the worker decode it again after one more read
// that finds the socket empty. The request after those is tried on the
// loop again, so a connection that changes namespace is served inline
// again within notInlineSkip+1 requests.
var ErrNotInline error = fmt.Errorf("%w: never on the event loop", thrift.ErrAbandonRequest)

// ErrDeferred is what a handler returns, when Inline(ctx) is true, for a
// request it started without waiting for its outcome (a raft write
// proposed from the loop) after calling Defer: the transport writes no
// reply now; once the Deferred is done it serves the same request frame
// again, on the goroutine that finished it, with a context on which
// DeferredOf returns the Deferred, and the handler answers from it. It is
// handled as ErrServeOnWorker by the generated processors (no reply
// written).
var ErrDeferred error = fmt.Errorf("%w: deferred", thrift.ErrAbandonRequest)

// A Deferred is a request started on the event loop whose reply is not
// known yet (see ErrDeferred). The event loop holds the request's
// connection on it as on a Hold's Waiter (a map key compared with ==), so
// a Deferred must be comparable and one request one value: use a pointer
// type.
//
// A deferred request waits at most the later of the server's FrameTimeout
// and its own deadline (Deadline) plus a grace of 1 s (deferGrace): its
// connection is then closed (the guard against a Deferred that is never
// done; a callback after that does nothing). Its handler must so finish it
// by its deadline (a raft write is answered with a Timeout then); the
// grace leaves that answer time to be written. Shutdown waits for a
// Deferred at most the frame timeout, whatever its deadline.
type Deferred interface {
	// OnDone arranges for f to be called once, when the request is
	// finished: by the goroutine that finishes it, or at once by OnDone's
	// caller if it is finished already. f does not block.
	OnDone(f func())
	// Deadline returns the request's own deadline (its deadline_ms), as
	// context.Context's Deadline does; ok is false when it has none (it
	// then waits at most the frame timeout). Called once, by the event
	// loop, when it holds the request: the value must not change.
	Deadline() (deadline time.Time, ok bool)
}

// A DeferredAnswer is a Deferred that, once done, can write its reply
// itself: the transport then writes that reply instead of serving the
// request's frame again (see ErrDeferred), which saves the second decode
// of the request and the second pass through the processor and handler.
type DeferredAnswer interface {
	Deferred
	// WriteAnswer writes the done request's whole reply message to oprot
	// as the processor would — the message header (name, thrift.REPLY,
	// seq), the method's result struct, the message end and Flush — and
	// reports whether it did. False: it wrote nothing and changed nothing
	// (an answer it leaves to the processor, e.g. an exception); the
	// transport then serves the frame again. Called once, by the
	// goroutine that finished the request; name and seq are the request
	// frame's.
	WriteAnswer(ctx context.Context, name string, seq int32, oprot thrift.TProtocol) bool
}

// deferGrace is how long after its own deadline a deferred request (see
// Deferred) may still be answered before the transport closes its
// connection: the handler finishes it at its deadline (the raft Service
// answers a write with a Timeout then), and the grace covers that answer's
// way to the transport (a completion goroutine's scheduling, Dragonboat's
// tick-granular proposal timeouts) and the sweeper's period.
const deferGrace = time.Second

// Defer, for a request served on the event loop, registers d as the
// request's outcome to come; the handler then returns ErrDeferred. It
// returns false, and does nothing, if ctx is not an inline request's (the
// handler must then wait itself). One Defer per request, and not with
// Hold.
func Defer(ctx context.Context, d Deferred) bool {
	st, ok := ctx.Value(inlineKey{}).(*inlineState)
	if !ok {
		return false
	}
	st.d = d
	return true
}

// deferredKey marks the context of a deferred request served again (see
// ErrDeferred); its value is the Deferred.
type deferredKey struct{}

// DeferredOf returns the Deferred of a request served again once it was
// done (see ErrDeferred), nil for any other request.
func DeferredOf(ctx context.Context) Deferred {
	d, _ := ctx.Value(deferredKey{}).(Deferred)
	return d
}

// notInlineSkip is how many readable events of a connection go straight to
// a worker after one of its requests returned ErrNotInline.
const notInlineSkip = 16

// Abandoned reports whether a handler's err is ErrServeOnWorker,
// ErrNotInline or ErrDeferred: the request was not served (yet), it will be
// served again on a worker or, deferred, once done (handlers leave it out
// of their metrics).
func Abandoned(err error) bool {
	return err == ErrServeOnWorker || err == ErrNotInline || err == ErrDeferred
}

// inlineKey marks the context of requests served on the event loop; its
// value is the server's *inlineState.
type inlineKey struct{}

// inlineState is what a request served on the event loop leaves for the
// loop: a Hold or a Defer. Only the loop goroutine touches it (one request at a time).
type inlineState struct {
	w Waiter   // nil: no hold
	d Deferred // nil: not deferred
}

// A Waiter is what a held reply waits for (see Hold), such as a group
// commit's sync. Waiters are map keys (the event loop groups the replies
// held on one wait by their Waiter, compared with ==), so a Waiter must be
// comparable (a non-comparable one panics the loop) and one wait must be
// one value: use a pointer type.
type Waiter interface {
	// OnDone arranges for f to be called once, when the wait is over: by
	// the goroutine that ends it, after it has ended it, or at once by
	// OnDone's caller if it is already over. f does not block.
	OnDone(f func())
	// Err, once the wait is over, is nil if the replies held on it may be
	// sent; otherwise they are not, and their connections are closed.
	Err() error
}

// Inline reports whether the request of ctx is being served on the
// server's event loop, where it must not block (see ErrServeOnWorker).
func Inline(ctx context.Context) bool { return ctx.Value(inlineKey{}) != nil }

// Hold, for a request served on the event loop, makes its reply wait until
// w's wait is over; if w.Err() then reports an error the reply is not sent
// and the connection is closed (the client sees the outcome as unknown, as
// it must for a write that may not be durable). A reply held longer than
// the server's FrameTimeout is not sent either. Hold returns false, and
// does nothing, if ctx is not an inline request's: the caller must then
// wait itself. One hold per request.
func Hold(ctx context.Context, w Waiter) bool {
	st, ok := ctx.Value(inlineKey{}).(*inlineState)
	if !ok {
		return false
	}
	st.w = w
	return true
}

// withInline derives the event loop's request context from a connection's.
func (s *Server) withInline(ctx context.Context) context.Context {
	return context.WithValue(ctx, inlineKey{}, s.istate)
}

// inlineMaxFrame is the largest request frame served on the event loop;
// larger ones (batches, big values) go to a worker, so that one connection
// cannot hold the loop for long.
const inlineMaxFrame = 2 << 10

// frameMethod returns the method name of a request frame (without its
// length header) in protocol p, without decoding the rest and without
// allocating; false if the header does not parse (the worker path then
// answers it with the usual protocol error). Binary frames must use the
// strict (versioned) header, which every Thrift client writes by default.
func frameMethod(p Protocol, frame []byte) ([]byte, bool) {
	if p == Compact {
		// 0x82, version|type, varint seqid, varint name length, name.
		if len(frame) < 2 || frame[0] != 0x82 {
			return nil, false
		}
		rest := frame[2:]
		_, n := binary.Uvarint(rest)
		if n <= 0 {
			return nil, false
		}
		rest = rest[n:]
		size, n := binary.Uvarint(rest)
		if n <= 0 || size > uint64(len(rest)-n) {
			return nil, false
		}
		return rest[n : n+int(size)], true
	}
	// Strict binary: version|type (high bit set), int32 name length, name.
	if len(frame) < 8 || frame[0]&0x80 == 0 {
		return nil, false
	}
	size := binary.BigEndian.Uint32(frame[4:])
	if uint64(size) > uint64(len(frame)-8) {
		return nil, false
	}
	return frame[8 : 8+size], true
}

// inlineFrame reports whether a request frame may be served on the event
// loop: small, and of one of ServerConfig.InlineMethods.
func (s *Server) inlineFrame(frame []byte) bool {
	if len(frame) > inlineMaxFrame {
		return false
	}
	name, ok := frameMethod(s.cfg.Protocol, frame)
	if !ok {
		return false
	}
	_, ok = s.inline[string(name)] // no allocation: map lookup
	return ok
}
