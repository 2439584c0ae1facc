// Package checker turns a history — recorded by the simulator or by real
// clients — into a verdict: linearizability (Porcupine), session guarantees,
// causal consistency, convergence, durability (lost writes) and staleness,
// with reports in Markdown, JSON and HTML.
//
// # History format
//
// A history is a JSON Lines file (history.jsonl): one Op per line, in the
// order the operations were invoked. Fields (see Op for the Go type):
//
//	id        int     unique within the history, in invocation order
//	client    int     the client (process) that issued it; a client has at most one operation outstanding
//	session   string  the session it belongs to (clients that move between nodes keep their session)
//	f         string  the operation: get, put, delete, cas, incr, sadd, srem, smembers, ...
//	key       string  the key it touches
//	args      [string] its arguments: put [value]; cas [expected, new]; incr [delta]; sadd/srem [element]
//	invoke    int     when it was invoked, nanoseconds since the start of the run (virtual or wall)
//	complete  int     when its outcome became known; absent while the outcome is unknown
//	outcome   string  "ok" (it happened), "fail" (it certainly did not happen) or "unknown" (timeout, crash)
//	value     string  for reads: the value read; absent means the key was absent (nil)
//	values    [string] for reads of several values: set members, or siblings under quorum
//	int       int     for incr: the value after the increment
//	version   int     the key's version written or read, when the store reported one
//	error     string  for fail: the error code and message
//	node      string  the node that served it
//	options   {string:string} the consistency options used (read=linearizable, r=2, w=2, ...)
//	token_in  string  the session token the client sent
//	token_out string  the session token the reply carried
//
// An operation with outcome "unknown" may or may not have taken effect at
// any time after its invocation; checkers treat it so.
//
// Replica states for the convergence check are a second file,
// replicas.jsonl: one ReplicaState per line.
package checker
