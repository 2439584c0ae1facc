/*
 * dialkv client API.
 *
 * One service, DialKV. Commands are Redis-style (a name and binary
 * arguments) because the data model is Redis's; the calls whose structure
 * matters (transactions, scans, index queries, pub/sub, namespace admin) are
 * typed. docs/api.md walks through it.
 *
 * Errors: `call` (one command) raises a typed exception for every error.
 * `execute` (a batch) returns one Reply per command, and a command that fails
 * on its own (wrong type, failed condition, too large, bad argument) has a
 * Reply of kind ERROR, as in a Redis pipeline; only failures of the whole
 * request (unavailable, timeout, not leader, unknown namespace, ...) are
 * exceptions.
 *
 * Generated Go code is committed under gen-go/; `make gen` regenerates it.
 */

namespace go dialkv
namespace py dialkv

// ---------------------------------------------------------------- data

/** The kind of a Reply; it says which field holds the value. */
enum ReplyKind {
  NIL = 0,     // no value, "(nil)"
  STATUS = 1,  // a status line such as "OK" in str
  INT = 2,     // an integer in int_val
  FLOAT = 3,   // a double in dbl
  BULK = 4,    // a binary-safe string in str
  ARRAY = 5,   // a list of replies in array
  ERROR = 6,   // a typed error in error (inside batches only)
}

/** One Redis-style command: {name: "SET", argv: ["k", "v", "EX", "10"]}. */
struct Command {
  1: required string name,
  2: optional list<binary> argv,
}

/**
 * A typed error inside a batch reply. code is the stable error code
 * (WRONGTYPE, CONDFAILED, TOOLARGE, KEYTOOLARGE, ERR, UNKNOWN, CORRUPTION,
 * IOERR); condition and version are set for CONDFAILED.
 */
struct ReplyError {
  1: required string code,
  2: optional string message,
  3: optional string condition,
  4: optional i64 version,
}

/** The result of one command; mirrors core.Reply. */
struct Reply {
  1: required ReplyKind kind,
  2: optional binary str,
  3: optional i64 int_val,
  4: optional double dbl,
  5: optional list<Reply> array,
  6: optional ReplyError error,
  /** Version of the key written (after the write) or read; 0 if none. */
  7: optional i64 version,
  /** Concurrent sibling values found by a quorum read (str holds one). */
  8: optional list<binary> siblings,
}

/**
 * Per-request options. Each strategy reads the fields that concern it and
 * ignores the others; unset fields mean the namespace's defaults.
 */
struct RequestOptions {
  /** Namespace; unset or empty means "default". */
  1: optional string ns,
  /** raft: "linearizable" (default), "lease" or "stale". */
  2: optional string read_mode,
  /** quorum: replicas that must answer a read (r) / acknowledge a write (w). */
  3: optional i32 r,
  4: optional i32 w,
  /** quorum: forbid sloppy quorum (hinted replicas). */
  5: optional bool strict,
  /** quorum: "linearizable" for ABD-style reads and writes. */
  6: optional string mode,
  /** The session token from the previous response (causal, session guarantees). */
  7: optional binary token,
  /** Time budget in milliseconds, counted from when the node receives the request; 0: node default. */
  8: optional i64 deadline_ms,
  /** Client or session id, for logs and session state. */
  9: optional string client_id,
}

/** The answer to call, execute and transaction. */
struct ExecuteResponse {
  /** One reply per command, in order. */
  1: required list<Reply> replies,
  /** The new session token: send it with the next request. */
  2: optional binary token,
  /** The node that served the request. */
  3: optional string served_by,
  /** True when the strategy knows the read may be stale (raft "stale" reads). */
  4: optional bool stale,
}

enum ConditionKind {
  VERSION = 0,  // the key's version equals version (0: the key is absent)
  VALUE = 1,    // the key is a string equal to value
  EXISTS = 2,   // the key exists
  ABSENT = 3,   // the key does not exist
}

/** A precondition of a transaction. */
struct Condition {
  1: required binary key,
  2: required ConditionKind kind,
  3: optional i64 version,
  4: optional binary value,
}

/** A range or prefix scan over keys in byte order. */
struct ScanRequest {
  /** Only keys with this prefix (empty: all). */
  1: optional binary prefix,
  /** First key (inclusive; empty: from the start of the prefix). */
  2: optional binary start_key,
  /** Last key (exclusive; empty: to the end of the prefix). */
  3: optional binary end_key,
  /** Maximum keys returned (0: 100; the node caps it at 10000). */
  4: optional i32 limit,
  /** Return keys only, without values. */
  5: optional bool keys_only,
  /** The next_key of the previous page (empty: the first page). Keys come strictly after it. */
  6: optional binary cursor,
}

struct ScanResponse {
  1: required list<binary> keys,
  /**
   * values[i] is the string value of keys[i] as MGET gives it (NIL for keys
   * of other types), read just after the keys; absent with keys_only.
   */
  2: optional list<Reply> values,
  /** Pass as cursor (with the same bounds) to continue; empty when the scan is complete. */
  3: optional binary next_key,
  4: optional binary token,
  5: optional string served_by,
}

/**
 * A secondary-index query (indexes are made with the IDX.CREATE command):
 * the keys whose indexed field equals value, or, when value is unset, lies
 * between min and max. Bounds use ZRANGEBYSCORE syntax for number indexes
 * ("1.5", "(1.5", "-inf", "+inf") and ZRANGEBYLEX syntax for string indexes
 * ("[a", "(a", "-", "+"). Keys come ordered by (field value, key).
 */
struct IndexQuery {
  1: required string index,
  2: optional binary value,
  3: optional binary min,
  4: optional binary max,
  /** Maximum keys returned (0: 100; the node caps it at 10000). */
  5: optional i32 limit,
  /** The next_cursor of the previous page (empty: the first page). */
  6: optional binary cursor,
}

struct IndexQueryResponse {
  1: required list<binary> keys,
  2: optional binary token,
  3: optional string served_by,
  /** Pass as cursor to continue; empty when the query is complete. */
  4: optional binary next_cursor,
}

/** A published message delivered to a subscription. */
struct Message {
  1: required string channel,
  /** The pattern that matched, for pattern subscriptions. */
  2: optional string pattern,
  3: required binary payload,
}

struct PollResponse {
  1: required list<Message> messages,
  /** Messages dropped because the subscription's buffer was full. */
  2: optional i64 dropped,
}

/** A namespace: a keyspace with its replication strategy and parameters. */
struct NamespaceSpec {
  1: required string name,
  /** "local" now; "raft", "quorum", "causal" as they land. */
  2: required string strategy,
  3: optional map<string, string> params,
}

struct NodeInfo {
  1: required string id,
  2: optional string version,
  3: optional string address,
}

// ---------------------------------------------------------------- errors

exception WrongType { 1: string message }
exception ConditionFailed { 1: string message, 2: string condition, 3: i64 current_version }
exception ValueTooLarge { 1: string message }
/** Bad input: syntax, unknown command, unknown namespace or subscription. code says which. */
exception InvalidArgument { 1: string message, 2: string code }
/** Not enough replicas; retry after retry_after_ms. */
exception Unavailable { 1: string message, 2: i32 retry_after_ms }
/** The deadline passed; the outcome of a write is unknown. */
exception Timeout { 1: string message }
exception Corruption { 1: string message }
/** Ask another node: not the leader, or the key moved. address may be empty. */
exception NotLeader { 1: string message, 2: string address }
exception Unauthenticated { 1: string message }
exception Forbidden { 1: string message }

// ---------------------------------------------------------------- service

service DialKV {
  /** Liveness check; returns the serving node. */
  NodeInfo ping(),

  /**
   * Authenticates this connection: with a user name, secret is the user's
   * password; with an empty user, secret is a bearer token. Every later
   * request on the connection acts as the returned principal name (a new
   * login replaces it; a failed one leaves the connection unauthenticated).
   * Call it once per connection: a password check is deliberately slow.
   * Nodes without an --auth-file raise InvalidArgument.
   */
  string login(1: string user, 2: binary secret)
    throws (4: InvalidArgument invalid, 5: Unavailable unavailable, 9: Unauthenticated unauthenticated),

  /** One command; every error is a typed exception. */
  ExecuteResponse call(1: RequestOptions opts, 2: Command cmd)
    throws (1: WrongType wrong_type, 2: ConditionFailed condition_failed,
            3: ValueTooLarge too_large, 4: InvalidArgument invalid,
            5: Unavailable unavailable, 6: Timeout timeout, 7: Corruption corruption,
            8: NotLeader not_leader, 9: Unauthenticated unauthenticated, 10: Forbidden forbidden),

  /**
   * A batch of independent commands (a pipeline): one reply each; a command
   * that fails has a Reply of kind ERROR and the others still run. Not atomic:
   * use transaction for that.
   */
  ExecuteResponse execute(1: RequestOptions opts, 2: list<Command> cmds)
    throws (4: InvalidArgument invalid, 5: Unavailable unavailable, 6: Timeout timeout,
            8: NotLeader not_leader, 9: Unauthenticated unauthenticated, 10: Forbidden forbidden),

  /**
   * If every condition holds, apply every command atomically (one reply
   * each); otherwise nothing changes and ConditionFailed names the condition
   * and the key's current version.
   */
  ExecuteResponse transaction(1: RequestOptions opts, 2: list<Condition> conds, 3: list<Command> cmds)
    throws (1: WrongType wrong_type, 2: ConditionFailed condition_failed,
            3: ValueTooLarge too_large, 4: InvalidArgument invalid,
            5: Unavailable unavailable, 6: Timeout timeout, 7: Corruption corruption,
            8: NotLeader not_leader, 9: Unauthenticated unauthenticated, 10: Forbidden forbidden),

  ScanResponse scan(1: RequestOptions opts, 2: ScanRequest req)
    throws (4: InvalidArgument invalid, 5: Unavailable unavailable, 6: Timeout timeout,
            7: Corruption corruption, 8: NotLeader not_leader,
            9: Unauthenticated unauthenticated, 10: Forbidden forbidden),

  IndexQueryResponse index_query(1: RequestOptions opts, 2: IndexQuery query)
    throws (4: InvalidArgument invalid, 5: Unavailable unavailable, 6: Timeout timeout,
            7: Corruption corruption, 8: NotLeader not_leader,
            9: Unauthenticated unauthenticated, 10: Forbidden forbidden),

  /** Publish to a channel; returns the number of subscriptions that received it. */
  i64 publish(1: RequestOptions opts, 2: string channel, 3: binary payload)
    throws (4: InvalidArgument invalid, 9: Unauthenticated unauthenticated, 10: Forbidden forbidden),

  /**
   * Subscribe to channels and glob patterns (*, ?, [...]); returns a
   * subscription id for poll. A subscription not polled for a while (node
   * setting, default 60 s) expires.
   */
  string subscribe(1: RequestOptions opts, 2: list<string> channels, 3: list<string> patterns)
    throws (4: InvalidArgument invalid, 9: Unauthenticated unauthenticated, 10: Forbidden forbidden),

  /** Long poll: up to max messages, waiting up to wait_ms for the first. */
  PollResponse poll(1: string subscription, 2: i32 max, 3: i32 wait_ms)
    throws (4: InvalidArgument invalid),

  void unsubscribe(1: string subscription) throws (4: InvalidArgument invalid),

  void create_namespace(1: NamespaceSpec spec)
    throws (4: InvalidArgument invalid, 5: Unavailable unavailable,
            9: Unauthenticated unauthenticated, 10: Forbidden forbidden),
  void drop_namespace(1: string name)
    throws (4: InvalidArgument invalid, 5: Unavailable unavailable,
            9: Unauthenticated unauthenticated, 10: Forbidden forbidden),
  list<NamespaceSpec> list_namespaces(),
}
