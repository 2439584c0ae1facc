package consistency

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/dialkv/dialkv/core"
)

// NodeID names a replica (a node) within a cluster.
type NodeID string

// Options are the per-operation consistency options. Each strategy reads the
// fields that concern it and ignores the others; zero values mean the
// namespace's defaults.
type Options struct {
	// Raft: "linearizable" (ReadIndex, default), "lease", or "stale"
	// (any replica, possibly out of date).
	Read string
	// Quorum: replicas that must answer a read (R) or acknowledge a write
	// (W); 0 means the namespace default. Strict forbids sloppy quorum
	// (hinted replicas outside the preference list).
	R, W   int
	Strict bool
	// Quorum: "linearizable" asks for ABD-style reads and writes.
	Mode string
	// Quorum: read repair for this read, "sync", "async" or "off"; ""
	// means the namespace default.
	Repair string
}

// Request is a client request handed to a Replica.
type Request struct {
	// ID is unique among the requests the driver hands to one replica; the
	// Response carries it back.
	ID     uint64
	Client string // client or session id, for logs and session state
	// Exactly one of Cmd and Txn is set.
	Cmd   *core.Command
	Txn   *core.Txn
	Opts  Options
	Token []byte // session token the client sent (nil: none)
}

// Response answers one Request.
type Response struct {
	ID    uint64
	Reply core.Reply
	// Token is the new session token for the client to send with its next
	// request (nil if the strategy has none).
	Token []byte
	// Values holds sibling values when a quorum read finds concurrent
	// versions (Reply then holds one of them).
	Values [][]byte
	// Stale is set when the read was served without a linearizability
	// guarantee (raft: Options.Read "stale"); the value may be out of date.
	Stale bool
}

// Message is a message between replicas. Body is encoded by the strategy
// that sent it; the transport never looks inside.
//
// A body is immutable from the moment the sender's Ready returns it: the
// sender never modifies or reuses its array, nor does the driver or its
// transport, and a receiver only reads it — so a receiving replica may
// keep slices of the body it was given for as long as it likes
// (primary-backup's backups keep the entries' keys and values in their
// stores without copying them). A driver may hand one body to several
// receivers, or to one receiver twice (a duplicate). A transport that
// reads bodies into a buffer it reuses must copy each body out of it, once,
// before delivering it (the nodes' peer transport reads each body into
// an array of its own: transport.TestPeerBodiesAreNotReused).
type Message struct {
	From, To NodeID
	Body     []byte
}

// Ready is what a Replica has produced since the driver last collected it.
type Ready struct {
	// Sync asks the driver to make the replica's engine durable before it
	// sends Messages or Responses.
	Sync      bool
	Messages  []Message
	Responses []Response
}

// Replica is one node's instance of a sans-IO strategy. Calls are never
// concurrent; now is the node's own clock reading (it may be skewed).
type Replica interface {
	// Request hands the replica a client request.
	Request(now time.Time, req Request)
	// Receive hands the replica a message from a peer; the replica may
	// keep slices of m.Body (immutable, see Message).
	Receive(now time.Time, m Message)
	// Tick advances the replica's timers (retries, timeouts, anti-entropy).
	Tick(now time.Time)
	// Ready returns and clears the outputs accumulated so far. The
	// returned slices are the driver's until it next calls the replica: a
	// replica may reuse their arrays for its next outputs, so a driver
	// that keeps a Ready longer copies its slices (message bodies and
	// replies are never reused: a body is immutable, see Message).
	Ready() Ready
	// Dump renders the replica's user-visible state, one canonical string
	// per live key, for the convergence check.
	Dump(now time.Time) (map[string]string, error)
}

// Config is what a strategy needs to start one replica.
type Config struct {
	ID    NodeID
	Peers []NodeID // every replica of the namespace, including ID, in a fixed order
	// Engine is the replica's storage; after a crash the driver passes the
	// same engine, holding only what was synced.
	Engine core.Engine
	// Rand is the replica's own randomness, seeded by the driver.
	Rand *rand.Rand
	// Params are strategy parameters (N, R, W, regions, ...), as given at
	// namespace creation; each strategy documents its keys.
	Params map[string]string
	// Bug names a deliberately broken variant (see Bugs); "" is the correct
	// strategy.
	Bug string
}

// Bug describes a deliberately broken variant of a strategy, which the
// checkers must catch.
type Bug struct {
	Name     string // --bug NAME
	Strategy string
	Breaks   string // what it breaks, one line
}

// Factory starts a replica from a Config; it is called again with the same
// engine after a crash.
type Factory func(cfg Config) (Replica, error)

// Service is a strategy instance that owns its goroutines and I/O — the
// Raft strategy (Dragonboat runs its own), and the drivers that host a
// sans-IO Replica on a real node. A node routes each client request of a
// namespace to the namespace's Service.
type Service interface {
	// Do executes one request, honouring ctx's deadline. Errors that are not
	// replies (unavailable, not leader, timeout) are returned as error; use
	// *Redirect for "ask that node instead" and ErrUnavailable/ErrTimeout.
	Do(ctx context.Context, req Request) (Response, error)
	// Close stops the service.
	Close() error
}

// Redirect is the error a Service returns when another node must serve the
// request (not the leader, or the key moved).
type Redirect struct {
	Addr   string // client address of the node to use ("" if unknown)
	Reason string
}

func (r *Redirect) Error() string {
	return "redirect to " + r.Addr + ": " + r.Reason
}

// Errors a Service returns; wrap them with context (errors.Is works).
var (
	ErrUnavailable = errors.New("unavailable: not enough replicas reachable")
	ErrTimeout     = errors.New("timeout: outcome unknown")
)

// Error codes sans-IO replicas put in a Response's error reply when the
// request did not get a normal answer. Drivers and clients map them:
// CodeUnavailable means the request certainly did not take effect (retry is
// safe); CodeTimeout means its outcome is unknown.
const (
	CodeUnavailable core.Code = "UNAVAILABLE"
	CodeTimeout     core.Code = "TIMEOUT"
)

// Placement is implemented by replicas whose nodes each hold only part of
// the data (sharded strategies). Holders returns the nodes that must hold a
// copy of key once the cluster has converged; the convergence check compares
// a key only across its holders. Replicas that do not implement Placement
// hold every key.
type Placement interface {
	Holders(key string) []NodeID
}

// Settler is implemented by replicas that can hold work for other replicas
// which Dump does not show, such as hints kept for a node that was down
// (sloppy quorum). A cluster has settled when every replica reports none:
// the simulator waits for that, and for the replicas to agree, before its
// final reads, so that they read what the cluster converged to.
type Settler interface {
	// Unsettled is how many such items the replica holds (0: settled).
	Unsettled() int
}

// Sleeper is implemented by replicas whose Tick does nothing most of the
// time, so that a driver may leave out the calls that cannot matter (the
// simulator then schedules no tick event for an idle node). NextTick
// returns the earliest clock reading at which Tick may change the
// replica's state or produce output, given its state now; the zero Time
// when no Tick can until the replica's next Request or Receive. The answer
// holds until the next call of Request, Receive or Tick: a driver asks
// again after each. A Tick with an earlier reading must be a no-op, so
// skipping it is exact: the replica still sees every tick that can matter,
// with the same clock reading.
type Sleeper interface {
	NextTick() time.Time
}

// Sample is one measurement a replica took, for metrics and experiments:
// for example the propagation lag of one replicated write.
type Sample struct {
	Name  string // e.g. "causal_replication_lag_seconds"
	Label string // e.g. the write's source region ("" if none)
	Value float64
}

// Meter is implemented by replicas that measure themselves. The driver
// calls it like the Replica's other methods (never concurrently with them).
// Counters named NAME_sum and NAME_count are a total and how many values
// it adds up (drivers may print their mean); NAME_max is a maximum (summed
// across replicas by taking the largest); other counters are totals.
type Meter interface {
	// TakeSamples returns and clears the samples taken since the last
	// call (a replica keeps a bounded number between calls).
	TakeSamples() []Sample
	// Counters returns this incarnation's counters by name.
	Counters() map[string]float64
}
