package nodes

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// The write fence: the node side of a cluster backup that is one cut
// (`dialkv admin backup`, docs/operations.md, "One instant"). While a fence
// is raised the node starts no new client write: a request that would
// write (Call, Execute or Transaction with a command that is not read-only)
// is answered UNAVAILABLE with a retry-after hint, before it reaches its
// namespace, so it certainly did not take effect and the Go client retries
// it. Reads go on. Raising waits until the writes already started have
// answered (drained). Every client write enters the cluster through some
// node's client API and stays in flight there until it is answered
// (forwarding included), so once every node has raised and drained its
// fence, no client write is in flight anywhere and none starts: node
// checkpoints and raft exports taken then all hold the same set of writes.
//
// A fence has an id and a lease: it lifts by itself when the lease ends
// (the admin tool died), and a lift, a checkpoint under the fence and a
// status call name the id, so a late call cannot act on a later fence.

// Fence limits.
const (
	// DefaultFenceLease is a fence's lease when the caller gives none.
	DefaultFenceLease = 10 * time.Second
	// MaxFenceLease bounds a fence's lease.
	MaxFenceLease = 5 * time.Minute
	// fenceRetryAfterMs is the retry-after hint of a fenced write.
	fenceRetryAfterMs = 20
	// snapshotKeep is how long a checkpoint taken under a fence waits to
	// be fetched before it is removed.
	snapshotKeep = 10 * time.Minute
	// snapshotDirPrefix names those checkpoints under the data directory
	// (removed at start: a node that restarted lost its fence anyway).
	snapshotDirPrefix = ".snapshot-"
)

// Fence errors a caller can act on.
var (
	// ErrFenceBusy: another fence is raised.
	ErrFenceBusy = errors.New("write fence busy")
	// ErrFenceNotRaised: the fence named is not (or no longer) raised.
	ErrFenceNotRaised = errors.New("write fence not raised")
	// ErrRingChange: a ring change (docs/cluster.md) is under way or
	// happened during the checkpoint. Its handoff moves data between
	// nodes, which the fence does not stop: a segment could be in neither
	// its old owner's checkpoint (dropped) nor its new owner's (not yet
	// received).
	ErrRingChange = errors.New("ring change under way")
	// ErrHandoff: quorum hints were handed off to their owners during the
	// fence. A delivered hint is deleted at its holder, so the write could
	// be in neither checkpoint (the owner's taken before it arrived, the
	// holder's after it was deleted).
	ErrHandoff = errors.New("hints handed off during the fence")
)

// writeFence gates the node's client writes. The zero value is lowered.
//
// enter increments inflight before it reads raised, and raise sets raised
// before it reads inflight (both sequentially consistent), so a write
// either sees the fence and is refused or is counted before raise reads
// the count: none slips through unseen.
type writeFence struct {
	raised   atomic.Bool
	inflight atomic.Int64
	refused  atomic.Int64 // writes refused since the fence was raised

	mu    sync.Mutex
	id    string // the raised fence's id ("" when lowered)
	since time.Time
	lease *time.Timer
	// lapsed is the id of the last fence that ended by its lease, so a
	// lift of it says why it is gone.
	lapsed string
	// hints is the quorum hints the node held when the fence was raised
	// (Node.replicaHints).
	hints int
}

// enter admits a write unless the fence is raised; an admitted write
// calls exit when it has answered.
func (f *writeFence) enter() bool {
	f.inflight.Add(1)
	if f.raised.Load() {
		f.inflight.Add(-1)
		f.refused.Add(1)
		return false
	}
	return true
}

func (f *writeFence) exit() { f.inflight.Add(-1) }

// FenceStatus is a fence's state as the admin API reports it.
type FenceStatus struct {
	ID     string `json:"id"`
	Raised bool   `json:"raised"`
	// Drain is how long raising waited for the writes in flight.
	Drain time.Duration `json:"drain_ns,omitempty"`
	// Held is how long the fence has been (or was, on a lift) raised.
	Held time.Duration `json:"held_ns,omitempty"`
	// Refused counts the writes refused while it was raised.
	Refused int64 `json:"refused"`
	// InFlight is the writes in flight at the node.
	InFlight int64 `json:"in_flight"`
}

// raise raises fence id for lease and waits up to lease for the writes in
// flight to answer. Raising the fence already raised with id again waits
// for the drain again. A fence with another id refuses (ErrFenceBusy); a drain
// that does not finish lowers the fence again and fails.
func (f *writeFence) raise(id string, lease time.Duration, onLapse func(id string, held time.Duration, refused int64)) (FenceStatus, error) {
	f.mu.Lock()
	if f.id != "" && f.id != id {
		other := f.id
		f.mu.Unlock()
		return FenceStatus{}, fmt.Errorf("%w: fence %s is raised", ErrFenceBusy, other)
	}
	if f.id == "" {
		f.id, f.since = id, time.Now()
		f.refused.Store(0)
		f.raised.Store(true)
		f.lease = time.AfterFunc(lease, func() {
			if st, ok := f.lower(id, true); ok && onLapse != nil {
				onLapse(id, st.Held, st.Refused)
			}
		})
	}
	f.mu.Unlock()
	start := time.Now()
	for f.inflight.Load() > 0 {
		if time.Since(start) > lease {
			f.lower(id, false)
			return FenceStatus{}, fmt.Errorf("write fence %s: %d write(s) still in flight after %v; fence lowered", id, f.inflight.Load(), lease)
		}
		time.Sleep(200 * time.Microsecond)
	}
	return FenceStatus{ID: id, Raised: true, Drain: time.Since(start), Refused: f.refused.Load()}, nil
}

// held reports whether fence id is raised.
func (f *writeFence) held(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return id != "" && f.id == id
}

// lower lowers fence id; ok is false if it was not raised (lapsed says
// whether by its lease).
func (f *writeFence) lower(id string, lapsed bool) (FenceStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id == "" || f.id != id {
		return FenceStatus{ID: id}, false
	}
	st := FenceStatus{ID: id, Held: time.Since(f.since), Refused: f.refused.Load(), InFlight: f.inflight.Load()}
	f.raised.Store(false)
	f.lease.Stop()
	f.id, f.lease = "", nil
	if lapsed {
		f.lapsed = id
	}
	return st, true
}

// status is the fence's state now.
func (f *writeFence) status() FenceStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := FenceStatus{ID: f.id, Raised: f.id != "", InFlight: f.inflight.Load()}
	if st.Raised {
		st.Held, st.Refused = time.Since(f.since), f.refused.Load()
	}
	return st
}

// errFenced is the answer to a write refused by the fence.
func errFenced() error {
	return &gen.Unavailable{Message: "UNAVAILABLE write fence: a cluster backup is taking its cut; retry", RetryAfterMs: fenceRetryAfterMs}
}

// validFenceID accepts ids of 1-64 letters, digits, '-' and '_' (an id
// names a directory).
func validFenceID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// RaiseFence raises the node's write fence id for lease (0: the default)
// and waits for the writes in flight (see writeFence). The node's causal
// replicas hold their records until the fence is lowered (holdCausal).
func (n *Node) RaiseFence(id string, lease time.Duration) (FenceStatus, error) {
	return n.raiseFence(id, lease, true)
}

// raiseFence is RaiseFence; hold false leaves the causal replicas
// applying remote writes during the fence (the cut is then not causally
// closed with several regions: the control of the cut test,
// TestClusterBackupCausalRegions, asked for with ?hold=false).
func (n *Node) raiseFence(id string, lease time.Duration, hold bool) (FenceStatus, error) {
	if !validFenceID(id) {
		return FenceStatus{}, fmt.Errorf("write fence: bad id %q (want 1-64 of [A-Za-z0-9_-])", id)
	}
	if lease <= 0 {
		lease = DefaultFenceLease
	}
	lease = min(lease, MaxFenceLease)
	st, err := n.fence.raise(id, lease, func(id string, held time.Duration, refused int64) {
		n.holdCausal(false)
		n.log.Warn("write fence lapsed: its lease ended before it was lowered", "fence", id, "held", held, "refused", refused)
	})
	if err != nil {
		return st, err
	}
	// Ordering rule: with hold, the causal replicas hold their records
	// from here until the fence is lowered, so that this node's
	// checkpoint, taken after every node raised its fence, holds no
	// remote write applied after another node's checkpoint
	// (causal.Replica.HoldRemote). The same walk counts the hints.
	change := holdKeep
	if hold {
		change = holdStart
	}
	h := n.walkReplicas(change)
	if hold && !n.fence.held(id) {
		n.holdCausal(false) // lapsed meanwhile
	}
	n.fence.mu.Lock()
	if n.fence.id == id {
		n.fence.hints = h
	}
	n.fence.mu.Unlock()
	n.log.Info("write fence raised", "fence", id, "lease", lease, "drain", st.Drain)
	return st, nil
}

// LowerFence lowers fence id. An error wrapping ErrFenceNotRaised says it was not
// raised when called: never raised, lowered already, or lapsed (its lease
// ended) — writes may then have run before this call.
func (n *Node) LowerFence(id string) (FenceStatus, error) {
	st, ok := n.fence.lower(id, false)
	if !ok {
		n.fence.mu.Lock()
		lapsed := n.fence.lapsed == id
		n.fence.mu.Unlock()
		if lapsed {
			return st, fmt.Errorf("%w: fence %s lapsed (its lease ended) before it was lowered", ErrFenceNotRaised, id)
		}
		return st, fmt.Errorf("%w: fence %s is not raised", ErrFenceNotRaised, id)
	}
	n.holdCausal(false)
	n.log.Info("write fence lowered", "fence", id, "held", st.Held, "refused", st.Refused)
	return st, nil
}

// remoteHolder is implemented by replicas that can hold their records
// still for a backup's cut (causal.Replica).
type remoteHolder interface {
	HoldRemote(now time.Time, hold bool)
}

// holdCausal starts or ends the hold of every causal replica of the node
// (see causal.Replica.HoldRemote): while a fence is raised they apply no
// remote write, repair or handoff push, so the checkpoints of a
// multi-region causal namespace are causally closed in every region.
func (n *Node) holdCausal(hold bool) {
	if hold {
		n.walkReplicas(holdStart)
	} else {
		n.walkReplicas(holdEnd)
	}
}

// snapshotDir is where the checkpoint under fence id is kept until fetched.
func (n *Node) snapshotDir(id string) string {
	return filepath.Join(n.cfg.DataDir, snapshotDirPrefix+id)
}

// replicaHints is the number of hints the node's quorum replicas hold for
// other nodes (consistency.Settler).
func (n *Node) replicaHints() int { return n.walkReplicas(holdKeep) }

// holdChange is what walkReplicas does to the causal replicas' hold.
type holdChange int

const (
	holdKeep  holdChange = iota // leave it as it is
	holdStart                   // start holding (HoldRemote true)
	holdEnd                     // end the hold (HoldRemote false)
)

// walkReplicas visits every replica of the node's cluster namespaces once:
// it starts or ends the hold of the causal ones as change says
// (holdCausal), and returns the hints the quorum ones hold (replicaHints).
func (n *Node) walkReplicas(change holdChange) int {
	total := 0
	for _, ns := range n.namespaceList() {
		cs, ok := ns.svc.(*clusterService)
		if !ok {
			continue
		}
		cs.Call(func(r consistency.Replica) {
			if h, ok := r.(remoteHolder); ok && change != holdKeep {
				h.HoldRemote(time.Now(), change == holdStart)
			}
			if st, ok := r.(consistency.Settler); ok {
				total += st.Unsettled()
			}
		})
	}
	return total
}

// ringMark is the node's ring version and phase (ok false outside a
// cluster).
func (n *Node) ringMark() (version uint64, phase string, ok bool) {
	if n.cfg.NodeCommand == nil {
		return 0, "", false
	}
	r, ok := n.cfg.NodeCommand(core.Cmd("CLUSTER", "RING"))
	if !ok || r.IsError() {
		return 0, "", false
	}
	var rep RingReport
	if err := json.Unmarshal(r.Str, &rep); err != nil {
		return 0, "", false
	}
	return rep.Membership.Version, rep.Membership.Phase, true
}

// CheckpointFenced takes the node's checkpoint while fence id is raised
// into a directory of the data directory, kept until it is fetched (GET
// /v1/snapshot) or snapshotKeep passed. It fails with ErrFenceNotRaised
// unless the fence is raised both before and after the checkpoint, with
// ErrRingChange unless the node's ring is stable at one version before and
// after it (the version is in the manifest: the admin tool checks that
// every node has the same), and with ErrHandoff if its quorum replicas
// hold fewer hints after it than when the fence was raised (a hint that
// ends at a new count after one was delivered and another made is not
// seen).
func (n *Node) CheckpointFenced(id string) (CheckpointManifest, error) {
	if !n.fence.held(id) {
		return CheckpointManifest{}, fmt.Errorf("%w: fence %s is not raised", ErrFenceNotRaised, id)
	}
	v0, p0, inCluster := n.ringMark()
	if inCluster && p0 != PhaseStable {
		return CheckpointManifest{}, fmt.Errorf("%w: ring version %d is in phase %s; back up once the change is done", ErrRingChange, v0, p0)
	}
	dir := n.snapshotDir(id)
	m, err := n.Checkpoint(dir)
	if err != nil {
		os.RemoveAll(dir)
		return m, err
	}
	if !n.fence.held(id) {
		os.RemoveAll(dir)
		return m, fmt.Errorf("%w: fence %s was lowered during the checkpoint", ErrFenceNotRaised, id)
	}
	if v1, p1, _ := n.ringMark(); inCluster && (v1 != v0 || p1 != PhaseStable || m.RingVersion != v0) {
		os.RemoveAll(dir)
		return m, fmt.Errorf("%w: the ring moved from version %d to %d (phase %s) during the checkpoint", ErrRingChange, v0, v1, p1)
	}
	n.fence.mu.Lock()
	h0 := n.fence.hints
	n.fence.mu.Unlock()
	if h1 := n.replicaHints(); h1 < h0 {
		os.RemoveAll(dir)
		return m, fmt.Errorf("%w: %d hint(s) when the fence was raised, %d after the checkpoint; back up again", ErrHandoff, h0, h1)
	}
	time.AfterFunc(snapshotKeep, func() { os.RemoveAll(dir) })
	return m, nil
}

// removeStaleSnapshots removes checkpoints taken under a fence by an
// earlier run of the node (never fetched).
func (n *Node) removeStaleSnapshots() {
	old, _ := filepath.Glob(filepath.Join(n.cfg.DataDir, snapshotDirPrefix+"*"))
	for _, d := range old {
		if err := os.RemoveAll(d); err != nil {
			n.log.Warn("remove stale fenced checkpoint", "dir", d, "err", err)
		}
	}
}

// Admin API of the fence (registered by startAdmin):
//
//	POST   /v1/fence?id=ID[&lease=D][&hold=false]  raise, wait for the writes in flight: 200 FenceStatus; 409 another fence; 503 the drain timed out
//	                                  (hold=false: causal replicas keep applying remote writes; not one cut with several regions — a test's control)
//	DELETE /v1/fence?id=ID            lower: 200 FenceStatus (held, refused); 409 not raised (lapsed: the cut is not guaranteed)
//	GET    /v1/fence                  the fence's state
//	POST   /v1/snapshot?fence=ID      checkpoint under fence ID: 200 CheckpointManifest; 409 fence not raised, or a ring change
//	GET    /v1/snapshot?fence=ID      that checkpoint as tar, then removed; 404 none
//	DELETE /v1/snapshot?fence=ID      remove it
func (n *Node) registerFence(mux *http.ServeMux) {
	id := func(w http.ResponseWriter, r *http.Request, key string) (string, bool) {
		v := r.URL.Query().Get(key)
		if !validFenceID(v) {
			http.Error(w, fmt.Sprintf("want ?%s=ID (1-64 of [A-Za-z0-9_-])", key), http.StatusBadRequest)
			return "", false
		}
		return v, true
	}
	mux.HandleFunc("POST /v1/fence", func(w http.ResponseWriter, r *http.Request) {
		fid, ok := id(w, r, "id")
		if !ok {
			return
		}
		var lease time.Duration
		if s := r.URL.Query().Get("lease"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 {
				http.Error(w, "lease: want a positive duration such as 10s", http.StatusBadRequest)
				return
			}
			lease = d
		}
		hold := true
		if v := r.URL.Query().Get("hold"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				http.Error(w, "hold: want true or false", http.StatusBadRequest)
				return
			}
			hold = b
		}
		st, err := n.raiseFence(fid, lease, hold)
		switch {
		case err == nil:
			writeJSON(w, st)
		case errors.Is(err, ErrFenceBusy):
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("DELETE /v1/fence", func(w http.ResponseWriter, r *http.Request) {
		fid, ok := id(w, r, "id")
		if !ok {
			return
		}
		st, err := n.LowerFence(fid)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("GET /v1/fence", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.fence.status()) })
	mux.HandleFunc("POST /v1/snapshot", func(w http.ResponseWriter, r *http.Request) {
		fid, ok := id(w, r, "fence")
		if !ok {
			return
		}
		m, err := n.CheckpointFenced(fid)
		switch {
		case err == nil:
			writeJSON(w, m)
		case errors.Is(err, ErrFenceNotRaised), errors.Is(err, ErrRingChange), errors.Is(err, ErrHandoff):
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /v1/snapshot", func(w http.ResponseWriter, r *http.Request) {
		fid, ok := id(w, r, "fence")
		if !ok {
			return
		}
		dir := n.snapshotDir(fid)
		if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
			http.Error(w, "no checkpoint under fence "+fid, http.StatusNotFound)
			return
		}
		defer os.RemoveAll(dir)
		w.Header().Set("Content-Type", "application/x-tar")
		if err := WriteTar(w, dir); err != nil {
			n.log.Error("fenced checkpoint stream failed", "fence", fid, "err", err)
		}
	})
	mux.HandleFunc("DELETE /v1/snapshot", func(w http.ResponseWriter, r *http.Request) {
		fid, ok := id(w, r, "fence")
		if !ok {
			return
		}
		if err := os.RemoveAll(n.snapshotDir(fid)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]string{"removed": fid})
	})
}
