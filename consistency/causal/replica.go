package causal

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// Bug names of the deliberately broken variants.
const (
	BugNoDepCheck  = "causal-no-dep-check"
	BugIgnoreToken = "causal-ignore-token"
)

// Bugs lists the deliberately broken variants of the causal strategy.
func Bugs() []consistency.Bug {
	return []consistency.Bug{
		{Name: BugNoDepCheck, Strategy: "causal", Breaks: "applies remote writes without checking their dependencies (causal order across regions)"},
		{Name: BugIgnoreToken, Strategy: "causal", Breaks: "serves a client without waiting for its session token's dependencies (read-your-writes, monotonic reads after moving)"},
	}
}

// Conflict handling modes (Params "resolve").
const (
	// ResolveLWW keeps, per key, the write with the greatest version.
	ResolveLWW = "lww"
	// ResolveSiblings keeps concurrent writes of a key made in different
	// regions as siblings until a write that saw them replaces them.
	ResolveSiblings = "siblings"
)

// Defaults of the Params.
const (
	DefaultTimeout = 2 * time.Second
	DefaultRetry   = 50 * time.Millisecond
	// maxResend bounds the replication entries resent per retry round.
	maxResend = 256
	// maxCheckBackoff bounds the resend interval of a waiter's dependency
	// checks, in retries.
	maxCheckBackoff = 16
	// maxCtxKeys bounds the keys whose read versions a siblings-mode token
	// keeps as its write context (the most recently used ones).
	maxCtxKeys = 16
	// maxSkipDeps: a token from this region with more dependencies than
	// this is checked all the same — the checks' answers prune the ones
	// that became stable, should a stability notice have been lost.
	maxSkipDeps = 64
	// maxLags bounds the lag samples kept until the driver takes them.
	maxLags = 4096
)

var _ consistency.Replica = (*Replica)(nil)
var _ consistency.Factory = New

// Engine key prefixes.
const (
	prefixValue = "v/" // v/<key> -> record
	prefixQueue = "q/" // q/<seq, 8 bytes big-endian> -> outEntry
	keyMeta     = "m/meta"
)

// record is a key's state on a replica; a delete leaves a tombstone.
type record struct {
	Value   []byte  `json:"val,omitempty"`
	Deleted bool    `json:"del,omitempty"`
	V       Version `json:"v"`
	// Deps is the write's causal past that was not yet known to be
	// visible everywhere when it was written; a reader inherits it.
	Deps []Dep `json:"deps,omitempty"`
	// Siblings mode. A stored record keeps its concurrent writes in Sibs
	// (tombstones included, sorted by version, at most one per origin
	// node) and in Seen the newest version applied from each origin node;
	// V is then the greatest of Seen. A replicated write lists in Over the
	// siblings it replaces.
	Sibs []record  `json:"sibs,omitempty"`
	Seen []Version `json:"seen,omitempty"`
	Over []Version `json:"over,omitempty"`
	// Gone (siblings mode, a replication entry's record only): V is an
	// own write its origin's store rebuild found lost; applying it moves
	// Seen past V without a sibling, so the dependencies on V (and on the
	// origin's older lost writes of the key) are satisfied (rebuild.go).
	Gone bool `json:"gone,omitempty"`
}

// outEntry is a write waiting to be acknowledged by one other region.
type outEntry struct {
	Seq    uint64 `json:"seq"`
	First  uint64 `json:"first"` // Seq of the write's first entry: one entry per other region, consecutive (0: a rebuild's re-sent write, for some regions only)
	Region string `json:"region"`
	Key    string `json:"key"`
	Rec    record `json:"rec"`
	Deps   []Dep  `json:"deps,omitempty"`
	// Replaced (with Rec.Gone): not a lost write's notice but a rebuild's
	// re-send of an own write that a newer write replaced (resendEntry):
	// applied as a gone notice, counted apart (Stats.ReplacedApplied) —
	// nothing was lost.
	Replaced bool `json:"replaced,omitempty"`
	sent     time.Time
	every    time.Duration // resend interval: doubles up to maxCheckBackoff retries
}

// meta is persisted with every local write.
type meta struct {
	Seq     uint64 `json:"seq"`
	Wall    int64  `json:"wall"`
	Logical uint32 `json:"logical"`
}

// Message kinds.
const (
	kindForward      = "fwd"       // coordinator -> owner: a client request
	kindForwardReply = "fwd-reply" // owner -> coordinator
	kindReplicate    = "repl"      // owner -> owner in another region: a write and its deps
	kindReplicateAck = "repl-ack"  // the write is durable and visible there
	kindCheck        = "check"     // are these deps visible in your region?
	kindCheckOK      = "check-ok"  // yes (with the ones known stable everywhere)
	kindStable       = "stable"    // origin -> every node: these writes are applied in every region
)

// msg is the body of every message, JSON-encoded.
type msg struct {
	Kind     string        `json:"kind"`
	ID       uint64        `json:"id,omitempty"`
	Cmd      *core.Command `json:"cmd,omitempty"`
	Token    []byte        `json:"token,omitempty"`
	Reply    *core.Reply   `json:"reply,omitempty"`
	Deadline int64         `json:"deadline,omitempty"`
	Entry    *outEntry     `json:"entry,omitempty"`
	Region   string        `json:"region,omitempty"`
	Deps     []Dep         `json:"deps,omitempty"`
	Stable   []Dep         `json:"stable,omitempty"`
	Values   [][]byte      `json:"values,omitempty"`
	// Ver (repl-ack) is the acknowledged write's version: a sequence
	// number reused after a lost meta cannot retire another write's entry.
	Ver *Version `json:"ver,omitempty"`
	// Partial (seed, rebuild-done of a rebuild): sent by a node whose own
	// store is being rebuilt; its records are partial (rebuild.go).
	Partial bool `json:"partial,omitempty"`
}

// token is a client's causal context.
type token struct {
	Deps []Dep `json:"deps"`
	// Ctx (siblings mode) holds, for the keys the session used last, the
	// versions it saw: a write of the key replaces the siblings they
	// cover. Unlike Deps it is not pruned when writes become stable; it is
	// bounded by maxCtxKeys keys, most recently used last.
	Ctx []Dep `json:"ctx,omitempty"`
	// Region is where the token was last handed out. Everything in it is
	// visible there (a region applies a write only after its deps, and
	// acknowledges or serves only durable state), so a client that stays
	// in its region skips the dependency wait.
	Region string `json:"r,omitempty"`
}

// waiter waits until deps are visible in this region, then runs ready; if
// the deadline (zero: none) passes first it runs expired.
type waiter struct {
	id       uint64
	deps     []Dep
	pending  map[consistency.NodeID][]Dep // deps checked by other owners, not yet confirmed
	stable   []Dep
	deadline time.Time
	lastSent time.Time
	every    time.Duration // resend interval of its checks: doubles up to maxCheckBackoff retries
	// reread: its last evaluation could not read one of the records of
	// its local deps (an I/O error, a checksum failure), so Tick
	// evaluates it again every retry. A dependency not yet visible is
	// re-evaluated when its key changes (recheck), but a record that
	// becomes readable again announces nothing: without this, a waiter
	// whose checks were all answered stayed blocked for good — in
	// siblings mode the origin's later writes of the key chain on the
	// blocked one, so the key and everything depending on it stopped
	// replicating (simulator seed 37, see TestCausalLivenessRegressions).
	reread  bool
	ready   func(now time.Time, stable []Dep)
	expired func(now time.Time)
}

// inCheck is another node's question about deps this node owns.
type inCheck struct {
	from     consistency.NodeID
	id       uint64
	deps     []Dep
	deadline time.Time
}

// forwarded is a client request this node forwarded to the key's owner.
type forwarded struct {
	reqID    uint64
	deadline time.Time
}

type fwdKey struct {
	from consistency.NodeID
	id   uint64
}

// inKey identifies a remote write waiting for its dependencies: sender,
// sequence number and version (a sender that lost its meta may reuse a
// sequence number, never a version).
type inKey struct {
	from consistency.NodeID
	seq  uint64
	v    Version
}

// depKey identifies what a dependency is about: the key, and in siblings
// mode also the origin node (writes of one key from different regions are
// not ordered there).
type depKey struct {
	key  string
	node string
}

type region struct {
	name  string
	nodes []consistency.NodeID
}

// Replica is one node's causal+ replica.
type Replica struct {
	id       consistency.NodeID
	index    map[consistency.NodeID]int // position in the sorted peers, for rank
	region   string
	regions  []region // sorted by name
	eng      core.Engine
	bug      string
	timeout  time.Duration
	retry    time.Duration
	siblings bool
	regionOf map[consistency.NodeID]string
	clock    hlc
	seq      uint64
	nextID   uint64
	queue    map[uint64]*outEntry // outbound replication not yet acknowledged
	acked    map[uint64]int       // First of a local write -> regions that acknowledged it
	stable   map[depKey]Version   // newest version known applied in every region
	waiters  map[uint64]*waiter
	checks   []*inCheck
	fwds     map[uint64]*forwarded
	seenFwd  map[fwdKey]time.Time
	// seenOrder holds seenFwd's keys in the order they were seen (clock
	// readings never go back), so that Tick forgets the old ones from the
	// front instead of scanning the whole map on every tick.
	seenOrder []seenAt
	inflight  map[inKey]bool // remote writes waiting for their deps
	out       consistency.Ready
	stats     Stats
	lags      []consistency.Sample
	// corruptReported and repairReported are stats.CorruptReads and
	// stats.Repaired as of the last TakeSamples.
	corruptReported int64
	repairReported  int64
	// repairs are the corrupt records being re-fetched (integrity.go).
	repairs map[string]*repair
	peers   []consistency.NodeID // sorted
	// newStable are local writes that became stable since the last Tick.
	newStable []Dep
	// lastRound is when replication and checks were last resent: at most
	// maxResend of each per retry, whatever the tick rate.
	lastRound time.Time

	// Membership changes (membership.go). memVer is the member list
	// version taken; during a change (changing) regions is the old
	// placement and next the new one; streaming: the old owners push the
	// keys they lose (handoff). Client requests for the keys whose owner
	// in this node's region changes are refused during the change, and
	// after it (settling, prev the placement before it) until every node
	// in waitFor confirmed the version; the other keys are served.
	memVer     uint64
	changing   bool
	streaming  bool
	settling   bool
	next       []region
	prev       []region
	homeRegion string
	handoff    map[string]*push
	// moveFrom is, during a change, the placement before it (the down
	// nodes included): a key moves when its owner there differs from
	// its owner in next. down are the nodes leaving while down, and
	// seeds the keys they owned in another region that this node seeds
	// their new owner with (seed.go).
	moveFrom  []region
	down      []consistency.NodeID
	seeds     map[string]*push
	seeding   map[seedKey]bool
	waitFor   []consistency.NodeID
	confirmed map[consistency.NodeID]bool
	// skipHandoff is set by this package's tests only (the negative
	// control of TestAddNodeToRegionHandsOffKeys): nothing is handed off.
	skipHandoff bool
	// seedWait is set by this package's tests only (the negative
	// controls of TestSeedDependencyRule): seedWaitAll makes a seed wait
	// for every dependency, seedWaitNone for none (see onSeed).
	seedWait int

	// held (HoldRemote, a cluster backup's fence): no record changes
	// here but by this node's own client writes. Remote writes and
	// repairs whose dependencies are visible wait in deferred, applied in
	// order at the release; handoff pushes are not acknowledged (their
	// sender resends them).
	held     bool
	deferred []func(now time.Time)

	// Store rebuild (rebuild.go): rebuild is set while this node's store
	// is rebuilt from the other regions; feeds are the seeds this node
	// owes rebuilding nodes of other regions (by feedKey), feedID the
	// rebuild each of them asked for last; lost the own writes this
	// incarnation's rebuild found no copy of.
	rebuild *rebuilding
	feeds   map[string]*push
	feedID  map[consistency.NodeID]uint64
	// feedPartial: the feed of that node was queued while this node was
	// rebuilding itself (its seeds and done say Partial).
	feedPartial map[consistency.NodeID]bool
	// last: the status of the last rebuild this incarnation finished.
	last *RebuildStatus
	lost []LostVersion
	// postRebuild: the keys a finished rebuild still refuses until their
	// dependencies are visible (rebuildhold.go); nil: none.
	postRebuild *rebuildHeld
}

// Stats are counters for metrics and experiments.
type Stats struct {
	RemoteApplied  int64         // remote writes applied (not gone notices: GoneApplied)
	LagTotal       time.Duration // sum over remote writes applied of (apply time - write's HLC wall time); gone notices are not counted
	LagMax         time.Duration
	DepBytes       int64 // bytes of dependency metadata shipped with writes (JSON of deps and Over)
	WritesShipped  int64 // replication messages sent (first sends)
	EntryBytes     int64 // bytes of the replication entries shipped (first sends), JSON
	DepWaitTimeout int64 // requests refused because their token's deps were not visible in time
	Tokens         int64 // session tokens handed out
	TokenBytes     int64 // their total size in bytes
	TokenMaxBytes  int64 // the largest
	SiblingReads   int64 // reads that returned more than one value
	CorruptMeta    int64 // restarts that found the meta (sequence number, clock) corrupt and rebuilt it
	CorruptQueue   int64 // outbound replication entries found corrupt at restart (rebuilt from the store)
	Requeued       int64 // writes queued again for every other region to rebuild lost entries (LWW), and a store rebuild's re-sent writes, once per region lacking them (rebuild.go)
	CorruptReads   int64 // records that failed their checksum when read (the key is then re-fetched from the other regions)
	Repaired       int64 // corrupt records rebuilt from the other regions' copies
	HandoffMoved   int64 // records handed off to a new owner and acknowledged (membership changes)
	HandoffStored  int64 // pushed records stored here (newer than what this node had)
	Seeded         int64 // records this node seeded another region's new owner with, acknowledged (a down node removed)
	SeedsStored    int64 // seeds from other regions merged here (newer than what this node had)
	LostVersions   int64 // own writes a store rebuild found no copy of, per key and region (rebuild.go)
	GoneApplied    int64 // gone notices of another node's lost writes applied here (rebuild.go)
	// ReplacedApplied counts the notices of another node's re-sent writes
	// that a newer write replaced, applied here (rebuild.go; not lost, so
	// not in GoneApplied).
	ReplacedApplied int64
}

var _ consistency.Meter = (*Replica)(nil)

// LagMetric is the name of the samples of propagation lag (seconds), by
// source region: the time a remote write was applied here (the now the
// replica was given) minus its HLC wall time.
const LagMetric = "causal_replication_lag_seconds"

// TakeSamples implements consistency.Meter: the propagation lags of the
// remote writes applied since the last call (at most maxLags are kept in
// between; later ones are dropped).
//
// It also reports the reads that met a corrupt record since the last call
// as one sample named CorruptionMetric, label "record-read" (a node counts
// it in dialkv_corruption_events_total{kind="record-read"}), and the
// records rebuilt from the other regions as one sample named RepairMetric,
// label "record" (dialkv_corruption_repairs_total{kind="record"}).
func (r *Replica) TakeSamples() []consistency.Sample {
	out := r.lags
	r.lags = nil
	if d := r.stats.CorruptReads - r.corruptReported; d > 0 {
		out = append(out, consistency.Sample{Name: CorruptionMetric, Label: "record-read", Value: float64(d)})
		r.corruptReported = r.stats.CorruptReads
	}
	if d := r.stats.Repaired - r.repairReported; d > 0 {
		out = append(out, consistency.Sample{Name: RepairMetric, Label: "record", Value: float64(d)})
		r.repairReported = r.stats.Repaired
	}
	return out
}

// CorruptionMetric is the name of the samples counting reads that met a
// record failing its checksum (the nodes' corruption-event sample).
const CorruptionMetric = "dialkv_corruption_events"

// Counters implements consistency.Meter.
func (r *Replica) Counters() map[string]float64 {
	s := r.stats
	return map[string]float64{
		"causal_remote_applied":              float64(s.RemoteApplied),
		"causal_dep_bytes_per_write_sum":     float64(s.DepBytes),
		"causal_dep_bytes_per_write_count":   float64(s.WritesShipped),
		"causal_entry_bytes_per_write_sum":   float64(s.EntryBytes),
		"causal_entry_bytes_per_write_count": float64(s.WritesShipped),
		"causal_token_bytes_sum":             float64(s.TokenBytes),
		"causal_token_bytes_count":           float64(s.Tokens),
		"causal_token_bytes_max":             float64(s.TokenMaxBytes),
		"causal_sibling_reads":               float64(s.SiblingReads),
		"causal_token_wait_timeouts":         float64(s.DepWaitTimeout),
		"causal_corrupt_meta_rebuilt":        float64(s.CorruptMeta),
		"causal_corrupt_queue_entries":       float64(s.CorruptQueue),
		"causal_requeued_writes":             float64(s.Requeued),
		"causal_corrupt_record_reads":        float64(s.CorruptReads),
		"causal_records_repaired":            float64(s.Repaired),
		"causal_handoff_moved":               float64(s.HandoffMoved),
		"causal_handoff_stored":              float64(s.HandoffStored),
		"causal_seeded":                      float64(s.Seeded),
		"causal_seeds_stored":                float64(s.SeedsStored),
		"causal_lost_versions":               float64(s.LostVersions),
		"causal_gone_applied":                float64(s.GoneApplied),
		"causal_replaced_applied":            float64(s.ReplacedApplied),
	}
}

// ParseRegions parses "us:n1,n2;eu:n3,n4". An empty spec puts every peer in
// one region named "default".
func ParseRegions(spec string, peers []consistency.NodeID) (map[consistency.NodeID]string, error) {
	out := make(map[consistency.NodeID]string, len(peers))
	if strings.TrimSpace(spec) == "" {
		for _, p := range peers {
			out[p] = "default"
		}
		return out, nil
	}
	for _, part := range strings.Split(spec, ";") {
		name, nodes, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || name == "" || nodes == "" {
			return nil, fmt.Errorf("causal: region %q: want NAME:NODE,NODE", part)
		}
		for _, n := range strings.Split(nodes, ",") {
			id := consistency.NodeID(strings.TrimSpace(n))
			if prev, dup := out[id]; dup {
				return nil, fmt.Errorf("causal: node %s is in regions %s and %s", id, prev, name)
			}
			out[id] = name
		}
	}
	for _, p := range peers {
		if _, ok := out[p]; !ok {
			return nil, fmt.Errorf("causal: peer %s is in no region of %q", p, spec)
		}
	}
	if len(out) != len(peers) {
		return nil, fmt.Errorf("causal: regions %q name nodes that are not peers", spec)
	}
	return out, nil
}

// New starts a replica (and restarts one after a crash: it recovers its
// outbound queue and clock from cfg.Engine). Params: "regions" (see
// ParseRegions), "timeout" and "retry" (Go durations), "resolve" (lww, the
// default, or siblings).
func New(cfg consistency.Config) (consistency.Replica, error) {
	return NewReplica(cfg)
}

// NewReplica is New with the concrete type.
func NewReplica(cfg consistency.Config) (*Replica, error) {
	if cfg.Engine == nil {
		return nil, errors.New("causal: no engine")
	}
	regionOf, err := ParseRegions(cfg.Params["regions"], cfg.Peers)
	if err != nil {
		return nil, err
	}
	r := &Replica{
		id:          cfg.ID,
		region:      regionOf[cfg.ID],
		eng:         cfg.Engine,
		bug:         cfg.Bug,
		timeout:     DefaultTimeout,
		retry:       DefaultRetry,
		queue:       map[uint64]*outEntry{},
		acked:       map[uint64]int{},
		stable:      map[depKey]Version{},
		regionOf:    regionOf,
		waiters:     map[uint64]*waiter{},
		fwds:        map[uint64]*forwarded{},
		seenFwd:     map[fwdKey]time.Time{},
		inflight:    map[inKey]bool{},
		handoff:     map[string]*push{},
		seeds:       map[string]*push{},
		seeding:     map[seedKey]bool{},
		repairs:     map[string]*repair{},
		confirmed:   map[consistency.NodeID]bool{},
		feeds:       map[string]*push{},
		feedID:      map[consistency.NodeID]uint64{},
		feedPartial: map[consistency.NodeID]bool{},
	}
	// A node that is not among the peers (started with --join, not added
	// yet) hosts the namespace as an outsider: it owns no key and refuses
	// client requests until a member list names it (SetMembership).
	switch cfg.Params["resolve"] {
	case "", ResolveLWW:
	case ResolveSiblings:
		r.siblings = true
	default:
		return nil, fmt.Errorf("causal: param resolve=%q: want lww or siblings", cfg.Params["resolve"])
	}
	if cfg.Bug != "" && cfg.Bug != BugNoDepCheck && cfg.Bug != BugIgnoreToken {
		return nil, fmt.Errorf("causal: unknown bug %q", cfg.Bug)
	}
	for _, p := range []struct {
		key string
		dst *time.Duration
	}{{"timeout", &r.timeout}, {"retry", &r.retry}} {
		if s := cfg.Params[p.key]; s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("causal: param %s=%q: want a positive duration", p.key, s)
			}
			*p.dst = d
		}
	}
	sorted := append([]consistency.NodeID(nil), cfg.Peers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	r.peers = sorted
	r.index = make(map[consistency.NodeID]int, len(sorted))
	for i, p := range sorted {
		r.index[p] = i
	}
	byRegion := map[string][]consistency.NodeID{}
	for _, p := range cfg.Peers {
		byRegion[regionOf[p]] = append(byRegion[regionOf[p]], p)
	}
	for name, nodes := range byRegion {
		sort.Slice(nodes, func(i, j int) bool { return nodes[i] < nodes[j] })
		r.regions = append(r.regions, region{name: name, nodes: nodes})
	}
	sort.Slice(r.regions, func(i, j int) bool { return r.regions[i].name < r.regions[j].name })
	// Request and check ids start at a random point of each incarnation,
	// so that a late answer to a question asked before a crash cannot be
	// taken for the answer to a new one.
	if cfg.Rand != nil {
		r.nextID = cfg.Rand.Uint64() &^ (1<<32 - 1)
	}
	if err := r.recover(); err != nil {
		return nil, err
	}
	return r, nil
}

// owner returns the node of region reg that owns key.
func (r *Replica) owner(reg string, key string) consistency.NodeID {
	return ownerIn(r.regions, reg, key)
}

// fnvKey is the FNV-1a hash of a string (a key or a node id: ownerIn
// combines the two).
func fnvKey(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	return h.Sum64()
}

func (r *Replica) send(to consistency.NodeID, m msg) {
	body, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("causal: encode message: %v", err)) // only plain data: cannot fail
	}
	r.out.Messages = append(r.out.Messages, consistency.Message{From: r.id, To: to, Body: body})
}

func errReply(code core.Code, format string, args ...any) core.Reply {
	return core.ErrorReply(core.Errorf(code, format, args...))
}

// Request implements consistency.Replica.
func (r *Replica) Request(now time.Time, req consistency.Request) {
	if req.Cmd == nil {
		r.respond(req.ID, errReply(core.CodeErr, "the causal strategy does not support transactions"), nil, nil)
		return
	}
	key, err := checkCommand(*req.Cmd)
	if err != nil {
		r.respond(req.ID, core.ErrorReply(err), nil, nil)
		return
	}
	if r.region == "" || r.keyPaused(key) {
		r.respond(req.ID, r.errPaused(key), nil, nil)
		return
	}
	deadline := now.Add(r.timeout)
	if o := r.owner(r.region, key); o != r.id {
		r.nextID++
		r.fwds[r.nextID] = &forwarded{reqID: req.ID, deadline: deadline}
		cmd := *req.Cmd
		r.send(o, msg{Kind: kindForward, ID: r.nextID, Cmd: &cmd, Token: req.Token, Deadline: deadline.UnixNano()})
		return
	}
	r.serve(now, *req.Cmd, req.Token, deadline, func(rep core.Reply, tok []byte, vals [][]byte) { r.respond(req.ID, rep, tok, vals) })
}

func (r *Replica) respond(id uint64, rep core.Reply, tok []byte, vals [][]byte) {
	r.out.Responses = append(r.out.Responses, consistency.Response{ID: id, Reply: rep, Token: tok, Values: vals})
}

// checkCommand validates a command and returns its key.
func checkCommand(c core.Command) (string, *core.Error) {
	switch c.Name {
	case "GET", "DEL":
		if len(c.Args) != 1 {
			return "", core.Errorf(core.CodeErr, "wrong number of arguments for '%s' command", strings.ToLower(c.Name))
		}
	case "SET":
		if len(c.Args) != 2 {
			return "", core.Errorf(core.CodeErr, "the causal strategy supports only SET key value")
		}
	default:
		return "", core.Errorf(core.CodeErr, "command %s is not supported by the causal strategy (GET, SET, DEL); use a raft namespace", c.Name)
	}
	return string(c.Args[0]), nil
}

// serve runs a request at the key's owner once the client's dependencies are
// visible in this region.
func (r *Replica) serve(now time.Time, cmd core.Command, tokBytes []byte, deadline time.Time, reply func(core.Reply, []byte, [][]byte)) {
	var tok token
	if len(tokBytes) > 0 {
		if err := json.Unmarshal(tokBytes, &tok); err != nil {
			reply(errReply(core.CodeErr, "invalid session token: %v", err), nil, nil)
			return
		}
	}
	wait := tok.Deps
	if r.bug == BugIgnoreToken || (tok.Region == r.region && len(tok.Deps) <= maxSkipDeps) {
		wait = nil
	}
	key := string(cmd.Args[0])
	r.await(now, wait, deadline, func(now time.Time, stable []Dep) {
		// The member list may have changed while the request waited:
		// a key that moves (or that this node no longer owns) is not
		// executed here (see Membership).
		if r.region == "" || r.owner(r.region, key) != r.id || r.keyPaused(key) {
			reply(r.errPaused(key), tokBytes, nil)
			return
		}
		rep, out, vals := r.execute(now, cmd, tok)
		reply(rep, r.encodeToken(out, stable), vals)
	}, func(now time.Time) {
		r.stats.DepWaitTimeout++
		reply(errReply(consistency.CodeUnavailable, "dependencies of the session token are not yet visible in region %s; retry", r.region), tokBytes, nil)
	})
}

// dk returns what a dependency is about: its key, and in siblings mode its
// origin node too.
func (r *Replica) dk(d Dep) depKey {
	if r.siblings {
		return depKey{key: d.Key, node: d.V.Node}
	}
	return depKey{key: d.Key}
}

// merge is mergeDeps in this replica's mode.
func (r *Replica) merge(a []Dep, b ...Dep) []Dep { return mergeDeps(r.siblings, a, b...) }

// encodeToken drops dependencies known to be visible everywhere.
func (r *Replica) encodeToken(tok token, stable []Dep) []byte {
	drop := map[depKey]Version{}
	for _, s := range stable {
		if cur, ok := drop[r.dk(s)]; !ok || cur.Less(s.V) {
			drop[r.dk(s)] = s.V
		}
	}
	for k, v := range r.stable {
		if cur, ok := drop[k]; !ok || cur.Less(v) {
			drop[k] = v
		}
	}
	kept := make([]Dep, 0, len(tok.Deps))
	for _, d := range tok.Deps {
		if s, ok := drop[r.dk(d)]; ok && s.AtLeast(d.V) {
			continue
		}
		kept = append(kept, d)
	}
	b, _ := json.Marshal(token{Deps: kept, Ctx: tok.Ctx, Region: r.region})
	r.stats.Tokens++
	r.stats.TokenBytes += int64(len(b))
	r.stats.TokenMaxBytes = max(r.stats.TokenMaxBytes, int64(len(b)))
	return b
}

// touchCtx makes vs the versions of key in a siblings-mode write context,
// most recently used last, keeping at most maxCtxKeys keys.
func touchCtx(ctx []Dep, key string, vs []Version) []Dep {
	out := make([]Dep, 0, len(ctx)+len(vs))
	keys := map[string]bool{}
	for _, d := range ctx {
		if d.Key != key {
			out = append(out, d)
			keys[d.Key] = true
		}
	}
	for _, v := range vs {
		out = append(out, Dep{Key: key, V: v})
	}
	for len(keys) >= maxCtxKeys {
		oldest := out[0].Key
		delete(keys, oldest)
		out = slices.DeleteFunc(out, func(d Dep) bool { return d.Key == oldest })
	}
	return out
}

// execute applies a command at the key's owner; tok is the client's context.
// It returns the reply, the client's new context and, for a read of
// several siblings, their values.
func (r *Replica) execute(now time.Time, cmd core.Command, tok token) (core.Reply, token, [][]byte) {
	key := string(cmd.Args[0])
	cur, err := r.load(key)
	if err != nil {
		if _, ok := r.repairs[key]; ok {
			// Certainly not executed; the record is being rebuilt.
			return errReply(consistency.CodeUnavailable, "the record of %q failed its checksum and is being re-fetched from the other regions; retry", key), tok, nil
		}
		return core.ErrorReply(core.AsError(err)), tok, nil
	}
	if cmd.Name == "GET" {
		if r.siblings {
			return r.getSiblings(key, cur, tok)
		}
		if cur.V.IsZero() {
			return core.Nil(), tok, nil
		}
		tok.Deps = r.merge(tok.Deps, append(r.prune(cur.Deps), Dep{Key: key, V: cur.V})...)
		rep := core.Bulk(cur.Value)
		if cur.Deleted {
			rep = core.Nil()
		}
		rep.Version = r.rank(cur.V)
		return rep, tok, nil
	}
	// The write must be newer than the key's stored versions, whatever
	// clock was recovered at restart (a rebuilt meta; remote versions
	// observed since the last local write are not persisted). Token
	// versions are not observed: a client could push the clock anywhere.
	r.clock.observe(cur.V)
	for _, v := range cur.Seen {
		r.clock.observe(v)
	}
	wall, logical := r.clock.next(now)
	deps := r.prune(tok.Deps)
	rec := record{V: Version{Wall: wall, Logical: logical, Node: string(r.id)}}
	var rep core.Reply
	if cmd.Name == "SET" {
		rec.Value = append([]byte(nil), cmd.Args[1]...)
		rep = core.OK()
	} else {
		rec.Deleted = true
		rep = core.Int(0)
		if live(cur) {
			rep = core.Int(1)
		}
	}
	stored := rec
	if r.siblings {
		// The write replaces the siblings the client's context covers
		// and this node's own previous write of the key (writes of a key
		// in one region are ordered by its owner). It depends on that
		// previous write, so every region applies one node's writes of a
		// key in order, and Seen then tells exactly what was applied.
		cover := map[string]Version{}
		for _, d := range slices.Concat(tok.Ctx, tok.Deps) {
			if d.Key == key && cover[d.V.Node].Less(d.V) {
				cover[d.V.Node] = d.V
			}
		}
		for _, s := range cur.Sibs {
			if c, ok := cover[s.V.Node]; s.V.Node == string(r.id) || (ok && c.AtLeast(s.V)) {
				rec.Over = append(rec.Over, s.V)
			}
		}
		if prev := seenOf(cur.Seen, string(r.id)); !prev.IsZero() {
			deps = r.prune(r.merge(deps, Dep{Key: key, V: prev}))
		}
		rec.Deps = deps
		stored = applySibling(cur, rec)
	} else {
		rec.Deps = deps
		stored = rec
	}
	b := r.eng.NewBatch()
	defer b.Close()
	b.Set([]byte(prefixValue+key), sealJSON([]byte(prefixValue+key), stored))
	var entries []*outEntry
	first := r.seq + 1
	for _, g := range r.regions {
		if g.name == r.region {
			continue
		}
		r.seq++
		e := &outEntry{Seq: r.seq, First: first, Region: g.name, Key: key, Rec: rec, Deps: deps}
		b.Set(queueKey(e.Seq), sealJSON(queueKey(e.Seq), e))
		entries = append(entries, e)
	}
	b.Set([]byte(keyMeta), sealJSON([]byte(keyMeta), meta{Seq: r.seq, Wall: r.clock.wall, Logical: r.clock.logical}))
	if err := b.Commit(false); err != nil {
		return core.ErrorReply(core.AsError(fmt.Errorf("causal: write %q: %w", key, err))), tok, nil
	}
	// Ordering rule: the record and its replication entries must be durable
	// before the client's acknowledgement or any replication message leaves.
	r.out.Sync = true
	r.changed(key)
	for _, e := range entries {
		r.queue[e.Seq] = e
		e.sent = now
		r.send(r.owner(e.Region, key), msg{Kind: kindReplicate, Entry: e, Region: r.region})
		r.stats.WritesShipped++
		// The dependency metadata of a shipped write: its deps (sent
		// once, as the entry's Deps; Rec.Deps repeats them) and Over.
		r.stats.DepBytes += int64(len(mustJSON(e.Deps)))
		if len(rec.Over) > 0 {
			r.stats.DepBytes += int64(len(mustJSON(rec.Over)))
		}
		r.stats.EntryBytes += int64(len(mustJSON(e)))
	}
	if len(entries) == 0 { // a single region: the write is stable at once
		r.becameStable(Dep{Key: key, V: rec.V})
	}
	r.recheck(now, key)
	rep.Version = r.rank(rec.V)
	tok.Deps = r.merge(deps, Dep{Key: key, V: rec.V})
	if r.siblings {
		tok.Ctx = touchCtx(tok.Ctx, key, []Version{rec.V})
	}
	return rep, tok, nil
}

// live reports whether a stored record holds a value (not only tombstones).
func live(rec record) bool {
	if rec.Sibs == nil && rec.Seen == nil { // last-writer-wins (siblings mode always has Seen: a gone notice alone leaves no sibling)
		return !rec.V.IsZero() && !rec.Deleted
	}
	vis, _ := shown(rec)
	return len(vis) > 0
}

// shown returns the siblings-mode values a read returns, oldest first: the
// live siblings newer than every tombstone sibling (a delete concurrent with
// a SET wins over it when its version is greater, as under last-writer-wins;
// concurrent SETs are all kept). del is the newest tombstone (zero: none).
func shown(rec record) (vis []record, del Version) {
	for _, s := range rec.Sibs {
		if s.Deleted && del.Less(s.V) {
			del = s.V
		}
	}
	for _, s := range rec.Sibs {
		if !s.Deleted && del.Less(s.V) {
			vis = append(vis, s)
		}
	}
	return vis, del
}

// getSiblings reads a key in siblings mode: every live sibling's value, the
// newest one in the reply; the client's context gains the versions seen.
func (r *Replica) getSiblings(key string, cur record, tok token) (core.Reply, token, [][]byte) {
	if len(cur.Sibs) == 0 {
		return core.Nil(), tok, nil
	}
	add := []Dep{}
	for _, s := range cur.Sibs {
		add = append(append(add, r.prune(s.Deps)...), Dep{Key: key, V: s.V})
	}
	tok.Deps = r.merge(tok.Deps, add...)
	tok.Ctx = touchCtx(tok.Ctx, key, cur.Seen)
	vis, del := shown(cur)
	if len(vis) == 0 {
		rep := core.Nil()
		rep.Version = r.rank(del)
		return rep, tok, nil
	}
	// The reply holds the newest value and its version; with several,
	// Values holds them all, sorted.
	newest := vis[len(vis)-1]
	rep := core.Bulk(newest.Value)
	rep.Version = r.rank(newest.V)
	if len(vis) == 1 {
		return rep, tok, nil
	}
	r.stats.SiblingReads++
	vals := make([][]byte, len(vis))
	for i, s := range vis {
		vals[i] = s.Value
	}
	slices.SortFunc(vals, func(a, b []byte) int { return strings.Compare(string(a), string(b)) })
	return rep, tok, vals
}

// applySibling returns cur with the write w applied in siblings mode: the
// siblings w replaces go, w joins, and Seen records it.
func applySibling(cur record, w record) record {
	out := record{}
	for _, s := range cur.Sibs {
		if !covers(w.Over, s.V) {
			out.Sibs = append(out.Sibs, s)
		}
	}
	ws := w
	ws.Over = nil
	out.Sibs = append(out.Sibs, ws)
	sort.Slice(out.Sibs, func(i, j int) bool { return out.Sibs[i].V.Less(out.Sibs[j].V) })
	for _, v := range cur.Seen {
		if v.Node != w.V.Node {
			out.Seen = append(out.Seen, v)
		}
	}
	out.Seen = append(out.Seen, w.V)
	sort.Slice(out.Seen, func(i, j int) bool { return out.Seen[i].Node < out.Seen[j].Node })
	for _, v := range out.Seen {
		if out.V.Less(v) {
			out.V = v
		}
	}
	return out
}

// prune drops the dependencies known to be visible in every region.
func (r *Replica) prune(deps []Dep) []Dep {
	out := make([]Dep, 0, len(deps))
	for _, d := range deps {
		if s, ok := r.stable[r.dk(d)]; ok && s.AtLeast(d.V) {
			continue
		}
		out = append(out, d)
	}
	return out
}

// rank maps a version to the uint64 a Reply carries, preserving the order:
// 41 bits of wall milliseconds (until 2039), 16 of logical counter, 7 of
// node index. Versions that do not fit are reported as 0 (unknown), which
// checkers read as "no version".
func (r *Replica) rank(v Version) uint64 {
	idx, ok := r.index[consistency.NodeID(v.Node)]
	if !ok || v.Wall < 0 || v.Wall >= 1<<41 || v.Logical >= 1<<16 || idx >= 1<<7 {
		return 0
	}
	return uint64(v.Wall)<<23 | uint64(v.Logical)<<7 | uint64(idx)
}

// markStable records that d is visible in every region.
func (r *Replica) markStable(d Dep) {
	if cur, ok := r.stable[r.dk(d)]; !ok || cur.Less(d.V) {
		r.stable[r.dk(d)] = d.V
	}
}

func queueKey(seq uint64) []byte {
	k := make([]byte, len(prefixQueue)+8)
	copy(k, prefixQueue)
	binary.BigEndian.PutUint64(k[len(prefixQueue):], seq)
	return k
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("causal: encode: %v", err)) // only plain data: cannot fail
	}
	return b
}

// load reads a key's record (zero record when absent).
func (r *Replica) load(key string) (record, error) {
	b, err := r.eng.Get([]byte(prefixValue + key))
	if errors.Is(err, core.ErrNotFound) {
		return record{}, nil
	}
	if err != nil {
		return record{}, fmt.Errorf("causal: read %q: %w", key, err)
	}
	var rec record
	if err := openJSON([]byte(prefixValue+key), b, &rec); err != nil {
		r.stats.CorruptReads++
		r.noteCorrupt(key)
		return record{}, fmt.Errorf("causal: read %q: %w", key, err)
	}
	return rec, nil
}

// visible reports whether dep is visible at this node (which must own it):
// under last-writer-wins when the key's version is at least the dep's; in
// siblings mode when the dep's origin node's writes of the key have been
// applied up to it (they are applied in order). A record that cannot be
// read (an I/O error, a checksum failure) is not visible, and the error
// says so: unlike a version not applied yet, nothing will announce that
// the record can be read again (see waiter.reread).
func (r *Replica) visible(d Dep) (bool, error) {
	// Only the versions: decoding a record's dependencies and siblings
	// for every dependency checked dominated the owners' CPU (issue #8).
	var rec struct {
		V    Version   `json:"v"`
		Seen []Version `json:"seen,omitempty"`
	}
	b, err := r.eng.Get([]byte(prefixValue + d.Key))
	switch {
	case errors.Is(err, core.ErrNotFound):
	case err != nil:
		return false, fmt.Errorf("causal: read %q: %w", d.Key, err)
	default:
		if err := openJSON([]byte(prefixValue+d.Key), b, &rec); err != nil {
			r.stats.CorruptReads++
			r.noteCorrupt(d.Key)
			return false, fmt.Errorf("causal: read %q: %w", d.Key, err)
		}
	}
	if r.siblings {
		return seenOf(rec.Seen, d.V.Node).AtLeast(d.V), nil
	}
	return rec.V.AtLeast(d.V), nil
}

// await runs ready once every dep is visible in this region, or expired
// when the deadline (zero: none) passes first.
func (r *Replica) await(now time.Time, deps []Dep, deadline time.Time, ready func(time.Time, []Dep), expired func(time.Time)) {
	w := &waiter{deps: deps, pending: map[consistency.NodeID][]Dep{}, deadline: deadline, ready: ready, expired: expired}
	for _, d := range deps {
		o := r.owner(r.region, d.Key)
		if o != r.id {
			w.pending[o] = append(w.pending[o], d)
		}
	}
	if len(w.pending) == 0 && r.localReady(w) {
		ready(now, nil)
		return
	}
	r.nextID++
	w.id = r.nextID
	r.waiters[w.id] = w
	r.sendChecks(now, w)
}

func (r *Replica) sendChecks(now time.Time, w *waiter) {
	w.lastSent = now
	owners := make([]consistency.NodeID, 0, len(w.pending))
	for o := range w.pending {
		owners = append(owners, o)
	}
	sort.Slice(owners, func(i, j int) bool { return owners[i] < owners[j] })
	if w.every == 0 {
		w.every = r.retry
	}
	dl := int64(0)
	if !w.deadline.IsZero() {
		dl = w.deadline.UnixNano()
	} else if w.every > r.retry {
		// No deadline (replication): the owner keeps the question
		// until the next resend, and answers it as soon as it can.
		dl = now.Add(2 * w.every).UnixNano()
	}
	for _, o := range owners {
		r.send(o, msg{Kind: kindCheck, ID: w.id, Deps: w.pending[o], Deadline: dl})
	}
}

// localReady reports whether the deps this node owns are visible. It
// sets w.reread when a record could not be read, so that Tick asks again.
func (r *Replica) localReady(w *waiter) bool {
	w.reread = false
	for _, d := range w.deps {
		if r.owner(r.region, d.Key) != r.id {
			continue
		}
		ok, err := r.visible(d)
		if err != nil {
			w.reread = true
		}
		if !ok {
			return false
		}
	}
	return true
}

// recheck re-evaluates waiters and incoming checks after a new version of
// key became visible here. Only those with a dependency on key can have
// become ready: re-evaluating all of them (an engine read per dependency)
// on every write made a backlog quadratic, the owner fell behind its
// message queue and forwarded requests timed out for good (issue #8).
func (r *Replica) recheck(now time.Time, key string) {
	ids := make([]uint64, 0, len(r.waiters))
	for id, w := range r.waiters {
		if hasKey(w.deps, key) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		w, ok := r.waiters[id]
		if ok && len(w.pending) == 0 && r.localReady(w) {
			delete(r.waiters, id)
			w.ready(now, w.stable)
		}
	}
	kept := r.checks[:0]
	for _, c := range r.checks {
		if hasKey(c.deps, key) && r.answerCheck(c) {
			continue
		}
		kept = append(kept, c)
	}
	r.checks = kept
}

// ownsAll reports whether this node owns every dependency's key in its
// region (a dependency check is answered only by the owner).
func (r *Replica) ownsAll(deps []Dep) bool {
	for _, d := range deps {
		if r.region == "" || r.owner(r.region, d.Key) != r.id {
			return false
		}
	}
	return true
}

// hasKey reports whether one of deps is about key.
func hasKey(deps []Dep, key string) bool {
	for _, d := range deps {
		if d.Key == key {
			return true
		}
	}
	return false
}

// answerCheck replies to c if its deps are all visible here.
func (r *Replica) answerCheck(c *inCheck) bool {
	var stable []Dep
	for _, d := range c.deps {
		// A record that cannot be read leaves the check pending: the
		// asker resends it until answered.
		if ok, _ := r.visible(d); !ok {
			return false
		}
		if s, ok := r.stable[r.dk(d)]; ok && s.AtLeast(d.V) {
			stable = append(stable, d)
		}
	}
	r.send(c.from, msg{Kind: kindCheckOK, ID: c.id, Deps: c.deps, Stable: stable})
	return true
}

// Receive implements consistency.Replica.
func (r *Replica) Receive(now time.Time, m consistency.Message) {
	var in msg
	if err := json.Unmarshal(m.Body, &in); err != nil {
		return // a garbled message is dropped; the sender retries
	}
	switch in.Kind {
	case kindForward:
		r.onForward(now, m.From, in)
	case kindForwardReply:
		if f, ok := r.fwds[in.ID]; ok && in.Reply != nil {
			delete(r.fwds, in.ID)
			r.respond(f.reqID, *in.Reply, in.Token, in.Values)
		}
	case kindReplicate:
		r.onReplicate(now, m.From, in)
	case kindReplicateAck:
		r.onReplicateAck(in)
	case kindHandoff:
		r.onHandoff(now, m.From, in)
	case kindHandoffAck:
		r.onHandoffAck(in)
	case kindSeed:
		r.onSeed(now, m.From, in)
	case kindSeedAck:
		if in.ID != 0 {
			r.onFeedAck(m.From, in) // a seed for this node's rebuild (rebuild.go)
		} else {
			r.onSeedAck(in)
		}
	case kindRebuildReq:
		r.onRebuildReq(m.From, in)
	case kindRebuildDone:
		r.onRebuildDone(now, m.From, in)
	case kindRingQuery:
		r.onRingQuery(m.From, in)
	case kindRingAnswer:
		r.onRingAnswer(m.From, in)
	case kindFetch:
		r.onFetch(m.From, in)
	case kindFetchReply:
		r.onFetchReply(now, in)
	case kindCheck:
		if !r.ownsAll(in.Deps) {
			break // asked by a node that routes by another member list: it asks again
		}
		c := &inCheck{from: m.From, id: in.ID, deps: in.Deps}
		if in.Deadline != 0 {
			c.deadline = time.Unix(0, in.Deadline)
		} else {
			c.deadline = now.Add(4 * r.retry) // the waiter resends
		}
		if r.answerCheck(c) {
			break
		}
		// A waiter repeats its question every retry until answered: keep
		// one pending copy per question, or a backlog of unanswerable
		// checks grows without bound and every recheck rescans them all
		// (issue #8: the owner saturated and forwarding timed out for good).
		replaced := false
		for i, p := range r.checks {
			if p.from == c.from && p.id == c.id {
				r.checks[i] = c
				replaced = true
				break
			}
		}
		if !replaced {
			r.checks = append(r.checks, c)
		}
	case kindStable:
		for _, d := range in.Deps {
			r.markStable(d)
		}
	case kindCheckOK:
		w, ok := r.waiters[in.ID]
		if !ok || !slices.Equal(w.pending[m.From], in.Deps) {
			return // not an answer to this question
		}
		delete(w.pending, m.From)
		w.stable = append(w.stable, in.Stable...)
		if len(w.pending) == 0 && r.localReady(w) {
			delete(r.waiters, w.id)
			w.ready(now, w.stable)
		}
	}
}

// seenAt is a forwarded request's key and when it was first seen.
type seenAt struct {
	k  fwdKey
	at time.Time
}

func (r *Replica) onForward(now time.Time, from consistency.NodeID, in msg) {
	k := fwdKey{from, in.ID}
	if _, dup := r.seenFwd[k]; dup || in.Cmd == nil {
		return // a duplicated request must not write twice
	}
	r.seenFwd[k] = now
	r.seenOrder = append(r.seenOrder, seenAt{k, now})
	if _, err := checkCommand(*in.Cmd); err != nil {
		return
	}
	deadline := time.Unix(0, in.Deadline)
	if !now.Before(deadline) {
		return // the coordinator has given up: do not execute it late
	}
	if key, _ := checkCommand(*in.Cmd); r.region == "" || r.owner(r.region, key) != r.id || r.keyPaused(key) {
		// The key moves in a membership change, or the coordinator
		// routed by another member list: not executed, the client may
		// retry.
		rep := r.errPaused(key)
		r.send(from, msg{Kind: kindForwardReply, ID: in.ID, Reply: &rep})
		return
	}
	r.serve(now, *in.Cmd, in.Token, deadline, func(rep core.Reply, tok []byte, vals [][]byte) {
		r.send(from, msg{Kind: kindForwardReply, ID: in.ID, Reply: &rep, Token: tok, Values: vals})
	})
}

func (r *Replica) onReplicate(now time.Time, from consistency.NodeID, in msg) {
	e := in.Entry
	if e == nil {
		return
	}
	if r.region == "" || r.owner(r.region, e.Key) != r.id || r.frozen(e.Key) {
		// Sent by a node that routes by another member list, or the key
		// moves in a change under way (its record is frozen until the
		// new owner has it): not acknowledged, so the sender resends
		// it, to the owner of the list it then has.
		return
	}
	r.clock.observe(e.Rec.V)
	k := inKey{from: from, seq: e.Seq, v: e.Rec.V}
	if r.inflight[k] {
		return // already waiting for its dependencies
	}
	// Held (a backup's fence): applied at the release, still in
	// inflight meanwhile, so a resend is not queued twice.
	apply := r.unlessHeld(func(now time.Time, _ []Dep) {
		delete(r.inflight, k)
		if r.region == "" || r.owner(r.region, e.Key) != r.id || r.frozen(e.Key) {
			return // the key moves or moved while the write waited: resent to its new owner
		}
		cur, err := r.load(e.Key)
		if err != nil {
			return // not acknowledged: the sender retries
		}
		var next *record
		switch {
		case e.Rec.Gone && (!r.siblings || seenOf(cur.Seen, e.Rec.V.Node).AtLeast(e.Rec.V)):
			// A gone notice exists only in siblings mode; one already
			// covered changes nothing.
		case e.Rec.Gone:
			n := applyGone(cur, e.Rec.V)
			next = &n
			r.noteGone(e)
		case r.siblings && !seenOf(cur.Seen, e.Rec.V.Node).AtLeast(e.Rec.V):
			n := applySibling(cur, e.Rec)
			next = &n
		case !r.siblings && cur.V.Less(e.Rec.V):
			next = &e.Rec
		}
		if next != nil {
			b := r.eng.NewBatch()
			b.Set([]byte(prefixValue+e.Key), sealJSON([]byte(prefixValue+e.Key), *next))
			err := b.Commit(false)
			b.Close()
			if err != nil {
				return
			}
			r.changed(e.Key)
			if !e.Rec.Gone {
				r.noteApplied(now, e.Rec.V, in.Region)
			}
		}
		// Ordering rule: acknowledge only what is durable.
		r.out.Sync = true
		v := e.Rec.V
		r.send(from, msg{Kind: kindReplicateAck, ID: e.Seq, Region: r.region, Ver: &v})
		if next != nil {
			r.recheck(now, e.Key) // only a new version can make something visible
		}
	})
	deps := e.Deps
	if r.bug == BugNoDepCheck {
		deps = nil
	}
	r.inflight[k] = true
	r.await(now, deps, time.Time{}, apply, func(time.Time) { delete(r.inflight, k) })
}

// noteGone counts a gone notice e applied here: a lost write's
// (GoneApplied, a GoneMetric sample), or a replaced write's re-send
// (ReplacedApplied, a ReplacedMetric sample).
func (r *Replica) noteGone(e *outEntry) {
	label := fmt.Sprintf("%q %s", e.Key, e.Rec.V)
	if e.Replaced {
		r.stats.ReplacedApplied++
		r.lags = append(r.lags, consistency.Sample{Name: ReplacedMetric, Label: label, Value: 1})
		return
	}
	r.stats.GoneApplied++
	r.lags = append(r.lags, consistency.Sample{Name: GoneMetric, Label: label, Value: 1})
}

// noteApplied counts a remote write v from region applied here and its
// propagation lag. A gone notice is not counted (Stats.GoneApplied counts
// it): its version is the lost write's, often written long before the
// rebuild that sent it, so its age would inflate the lag figures, and no
// write's value was applied.
func (r *Replica) noteApplied(now time.Time, v Version, region string) {
	r.stats.RemoteApplied++
	lag := now.Sub(time.UnixMilli(v.Wall))
	r.stats.LagTotal += lag
	if lag > r.stats.LagMax {
		r.stats.LagMax = lag
	}
	if len(r.lags) < maxLags {
		r.lags = append(r.lags, consistency.Sample{Name: LagMetric, Label: region, Value: lag.Seconds()})
	}
}

// unlessHeld wraps the ready callback of a wait that stores a record (a
// remote write, a seed, a repair): while the replica is held
// (HoldRemote, a backup's fence) the call is deferred to the release,
// where the deferred calls run in order (and defer again if held anew).
func (r *Replica) unlessHeld(f func(now time.Time, stable []Dep)) func(now time.Time, stable []Dep) {
	var g func(now time.Time, stable []Dep)
	g = func(now time.Time, stable []Dep) {
		if r.held {
			r.deferred = append(r.deferred, func(now time.Time) { g(now, stable) })
			return
		}
		f(now, stable)
	}
	return g
}

func (r *Replica) onReplicateAck(in msg) {
	e, ok := r.queue[in.ID]
	if !ok || e.Region != in.Region || in.Ver == nil || *in.Ver != e.Rec.V {
		return
	}
	b := r.eng.NewBatch()
	b.Delete(queueKey(e.Seq))
	err := b.Commit(false)
	b.Close()
	if err != nil {
		return // the entry stays and is resent; the receiver is idempotent
	}
	if rp, ok := r.repairs[e.Key]; ok {
		rp.own = append(rp.own, e.Rec) // see repair.own
	}
	delete(r.queue, e.Seq)
	if e.First == 0 {
		return // a write re-sent by a store rebuild to the regions lacking it only: not counted (rebuild.go)
	}
	r.acked[e.First]++
	if r.acked[e.First] == len(r.regions)-1 {
		delete(r.acked, e.First)
		r.becameStable(Dep{Key: e.Key, V: e.Rec.V})
	}
}

// becameStable records that a local write is applied in every region and
// queues the news for every other node (sent in one message per node at the
// next Tick), so that they all drop it from the contexts they hand out —
// also from the tokens of clients that stay in their region, whose
// dependencies are not checked (and so not pruned by the checks' answers).
func (r *Replica) becameStable(d Dep) {
	r.markStable(d)
	r.newStable = append(r.newStable, d)
}

// Tick implements consistency.Replica: it resends unacknowledged
// replication, repeats dependency checks, and expires what is overdue.
func (r *Replica) Tick(now time.Time) {
	// Expire forwarded requests: their outcome is unknown.
	ids := sortedKeys(r.fwds)
	for _, id := range ids {
		if f := r.fwds[id]; !now.Before(f.deadline) {
			delete(r.fwds, id)
			r.respond(f.reqID, errReply(consistency.CodeTimeout, "no answer from the key's owner in region %s", r.region), nil, nil)
		}
	}
	round := now.Sub(r.lastRound) >= r.retry
	if round {
		r.lastRound = now
	}
	rechecked, reread := 0, 0
	for _, id := range sortedKeys(r.waiters) {
		w, ok := r.waiters[id]
		if !ok {
			continue // made ready by another waiter's callback
		}
		switch {
		case !w.deadline.IsZero() && !now.Before(w.deadline):
			delete(r.waiters, id)
			w.expired(now)
		case round && w.reread && len(w.pending) == 0 && reread < maxResend:
			reread++
			if r.localReady(w) {
				delete(r.waiters, id)
				w.ready(now, w.stable)
			}
		case round && len(w.pending) > 0 && now.Sub(w.lastSent) >= w.every && rechecked < maxResend:
			// Back off: thousands of waiters resending every retry
			// flooded the peer links and crowded out forwarded
			// requests (issue #8).
			w.every = min(2*w.every, maxCheckBackoff*r.retry)
			rechecked++
			r.sendChecks(now, w)
		}
	}
	kept := r.checks[:0]
	for _, c := range r.checks {
		if now.Before(c.deadline) {
			kept = append(kept, c)
		}
	}
	r.checks = kept
	i := 0
	for ; i < len(r.seenOrder) && now.Sub(r.seenOrder[i].at) > 4*r.timeout; i++ {
		delete(r.seenFwd, r.seenOrder[i].k)
	}
	clear(r.seenOrder[:i])
	r.seenOrder = r.seenOrder[i:]
	if len(r.newStable) > 0 {
		for _, p := range r.peers {
			if p != r.id {
				r.send(p, msg{Kind: kindStable, Deps: r.newStable})
			}
		}
		r.newStable = nil
	}
	resent := 0
	if !round {
		return
	}
	r.ringTick(now)
	r.repairTick(now)
	r.rebuildTick(now)
	r.tickRebuildHeld()
	if r.rebuild != nil {
		// Rebuilding: the salvaged entries' dependencies are checked
		// against what the other regions hold once every seed is in
		// (finishRebuild); sent then.
		return
	}
	for _, seq := range sortedKeys(r.queue) {
		e := r.queue[seq]
		if e.every == 0 {
			e.every = r.retry
		}
		if now.Sub(e.sent) < e.every || resent >= maxResend {
			continue
		}
		// Back off: an entry waiting for its dependencies at the receiver
		// is not acknowledged yet, and resending a backlog of them every
		// retry kept the receivers' queues full, so that forwarded
		// requests and their replies were dropped for good (issue #8).
		e.every = min(2*e.every, maxCheckBackoff*r.retry)
		e.sent = now
		resent++
		r.send(r.owner(e.Region, e.Key), msg{Kind: kindReplicate, Entry: e, Region: r.region})
	}
}

// sortedKeys returns m's keys in ascending order.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Ready implements consistency.Replica.
func (r *Replica) Ready() consistency.Ready {
	rd := r.out
	r.out = consistency.Ready{}
	return rd
}

// Dump implements consistency.Replica: the live keys this replica holds.
func (r *Replica) Dump(now time.Time) (map[string]string, error) {
	out := map[string]string{}
	it := r.eng.NewIter([]byte(prefixValue), []byte("v0"))
	for ok := it.First(); ok; ok = it.Next() {
		var rec record
		if err := openJSON(it.Key(), it.Value(), &rec); err != nil {
			it.Close()
			return nil, fmt.Errorf("causal: dump: %w", err)
		}
		if s, ok := render(rec); ok {
			out[string(it.Key()[len(prefixValue):])] = s
		}
	}
	return out, it.Close()
}

// render is a stored record's canonical rendering for Dump (false: no live
// value): the value quoted, or in siblings mode "siblings[...]" with the
// sorted quoted values when there are several, as the quorum strategy
// renders its siblings.
func render(rec record) (string, bool) {
	if rec.Sibs == nil && rec.Seen == nil { // last-writer-wins (see live)
		return strconv.Quote(string(rec.Value)), !rec.Deleted && !rec.V.IsZero()
	}
	var vals []string
	vis, _ := shown(rec)
	for _, s := range vis {
		vals = append(vals, strconv.Quote(string(s.Value)))
	}
	sort.Strings(vals)
	switch len(vals) {
	case 0:
		return "", false
	case 1:
		return vals[0], true
	}
	return "siblings[" + strings.Join(vals, ",") + "]", true
}

// Region returns the region this replica is in.
func (r *Replica) Region() string { return r.region }

var _ consistency.Placement = (*Replica)(nil)

// Holders implements consistency.Placement: the key's owner in every region.
func (r *Replica) Holders(key string) []consistency.NodeID {
	out := make([]consistency.NodeID, 0, len(r.regions))
	for _, g := range r.regions {
		out = append(out, r.owner(g.name, key))
	}
	return out
}
