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
// Conventions the checkers rely on:
//
//   - get: value absent means the key was absent; a get that returned
//     several values (quorum siblings) records them in values.
//   - cas [expected, new]: outcome ok means it swapped; a cas whose
//     condition did not hold is outcome fail with an error starting
//     "CONDFAILED" (core.CodeConditionFailed), which linearizability
//     reads as "the value was not expected"; any other fail is dropped.
//   - incr: int is the value after the increment (absent counts as 0).
//   - sadd/srem: int, when present, is 1 if the set changed, else 0.
//   - transfer [from, to, amount]: one transaction moving amount between
//     two accounts; balances [accounts...]: values are the accounts'
//     balances in that order ("" for an absent account: 0). Accounts
//     start absent, so every balances read must sum to 0.
//   - Written values (put, cas new, sadd element) should be unique per
//     key: session, causal and staleness checks skip keys where they are
//     not (clients/workload makes them unique).
//
// Replica states for the convergence check are a second file,
// replicas.jsonl: one ReplicaState per line.
//
// # Checking
//
// Check runs the checks named in Options.Checks (DefaultChecks when empty)
// and returns a Result: an overall Verdict and one CheckResult per check
// with its verdict (ok, violation, unknown, skipped), counts, notes on its
// assumptions and the first anomalies with their operations. WriteReports
// writes summary.md, summary.json and report.html. A simulator or test
// uses it like this:
//
//	opts := checker.DefaultOptions()
//	opts.Checks = []string{checker.CheckLinearizable, checker.CheckSession}
//	res := checker.Check(rec.Ops(), replicaStates, opts)
//	if res.Verdict == checker.VerdictViolation { ... res.Checks[i].Anomalies ... }
//	err := checker.WriteReports(dir, res)
//
// The checks, in short (docs/checker.md has the exact definitions):
//
//   - linearizable: Porcupine per key, with a register/counter/set model
//     (KVModel); unknown writes may take effect any time after their
//     invocation or never; a timeout is verdict unknown, never ok.
//   - session: read-your-writes, monotonic reads, monotonic writes and
//     writes-follow-reads per session, on unique-value register keys.
//   - causal: the causal-consistency bad patterns of Bouajjani et al.,
//     "On verifying causal consistency" (POPL 2017): CyclicCO,
//     WriteCOInitRead, ThinAirRead, WriteCORead; causal-convergence
//     (CCv, what causal+ stores promise) adds CyclicCF; causal-memory adds
//     WriteHBInitRead and CyclicHB (bounded history size).
//   - convergence: replica states equal; the first differing key is named.
//   - durability: acknowledged set adds missing from the final read (lost
//     writes) and reads of values no operation wrote.
//   - staleness: per read, how many acknowledged writes and how much time
//     it lagged; percentiles. A violation only with Options.BoundStaleness.
//   - bank (not a default check): every successful balances read (and
//     so the final one) sums to 0 — the transfers' total — so a
//     transfer applied to one account and not the other, or a read that
//     sees part of a transfer, is caught (cross-shard atomicity and
//     isolation).
//
// Main is `dialkv check`.
package checker
