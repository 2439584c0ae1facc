// Package client is the Go client library for dialkv nodes.
//
//	c, err := client.New([]string{"127.0.0.1:7379"})
//	defer c.Close()
//	_, err = c.Set(ctx, "k", []byte("v"))
//	v, err := c.Get(ctx, "k")        // v.Found, v.Data, v.Version
//	r, err := c.Do(ctx, "HSET", "h", "f", 1)
//
// A Client keeps a pool of connections per node address, applies the
// context's deadline to every call (and tells the node the remaining budget),
// carries the session token from each response to the next request
// automatically (per Session; a Client is a Session plus the pool), and
// retries with exponential backoff and full jitter — but only when that is
// safe:
//
//   - NotLeader/Moved: the node did not execute the request; the client
//     follows the address it names (or tries the next address) for every
//     operation.
//   - Unavailable: the node says the request certainly did not take effect;
//     retried for every operation, after at least the node's retry-after hint.
//   - A failure to connect: nothing was sent; retried for every operation.
//   - A connection that breaks after the request was sent, and Timeout: the
//     outcome is unknown, so only idempotent operations are retried: reads,
//     and writes whose repetition leaves the same state (SET without
//     NX/XX/GET/KEEPTTL, MSET, DEL, SADD, SREM, HSET, HDEL). Anything else
//     (INCR, LPUSH, APPEND, CAS, transactions, ...) returns the error: the
//     caller decides.
//
// Failing and slow nodes: each node address has a circuit breaker
// (WithCircuitBreaker): after 5 consecutive connection failures or timeouts
// the node is skipped for a cool-down (1 s) and then sent one probe; when
// every node is skipped a call fails fast with NODEDOWN (ErrNodeDown). A
// request any node can serve (quorum and causal namespaces, raft stale
// reads) goes to the faster of two random nodes by a latency EWMA, and a
// node more than 4x slower than the median gets only probes
// (WithSlowNodeRouting); other requests stay on one node until it fails. Client.Stats reports both.
//
// Hot keys (WithHotKeySpreading, off by default): the client refreshes the
// nodes' HOTKEYS lists and sends reads of a hot key that any node can
// serve to its nodes in turn; raft linearizable and lease reads stay at the
// leader.
//
// Errors are *Error values with a Code; errors.Is(err, client.ErrWrongType)
// and friends match by code, and errors.As gives the details (the current
// version for CONDFAILED, the address for MOVED, the retry-after hint).
// Inside a batch (Pipeline), a command that fails on its own is a reply of
// kind core.KindError, as in a Redis pipeline; ReplyErr turns it into an
// *Error.
//
// Per-operation options travel in the context: ctx = client.With(ctx,
// client.Namespace("users"), client.W(2)).
//
// History recording: WithRecorder logs get/put/delete/cas/incr/sadd/srem/
// smembers calls made through the convenience methods in the checker's
// history format (package checker).
package client
