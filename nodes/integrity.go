package nodes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
)

// corruptionSample is the consistency.Sample a node emits for corruption
// it found in a hosted replica's store; metrics count it in
// dialkv_corruption_events_total{namespace, kind}.
const corruptionSample = causal.CorruptionMetric

// repairSample is the consistency.Sample of corrupt records a causal
// replica rebuilt from the other regions' copies; metrics count it in
// dialkv_corruption_events_total{namespace, kind="record-repaired"}.
const repairSample = causal.RepairMetric

// lostSample is the consistency.Sample of a write a causal store rebuild
// found no region holds (label: key, version, region): logged as
// "version lost", counted in dialkv_corruption_events_total{kind="version-lost"}.
const lostSample = causal.LostVersionMetric

// rebuiltSample is the consistency.Sample of a causal store rebuild that
// completed (logged).
const rebuiltSample = causal.RebuiltMetric

// goneSample is the consistency.Sample of another node's gone notice
// applied here (label: key, version): a dependency on that lost write is
// satisfied without its value. Logged as "gone notice applied", counted
// in dialkv_corruption_events_total{kind="version-gone"}.
const goneSample = causal.GoneMetric

// replacedSample is the consistency.Sample of another node's re-sent write
// that a newer write replaced, applied here as a notice (label: key,
// version): nothing was lost, so it is logged at info level as "re-sent
// replaced write applied" and not counted as a corruption event.
const replacedSample = causal.ReplacedMetric

// stalledSample is the consistency.Sample of a causal store rebuild that
// waits without progress for nodes of other regions (label: whom, since
// when): logged at warning level as "causal store rebuild stalled".
const stalledSample = causal.StalledMetric

// Kinds of corruption events (the metric's kind label).
const (
	// corruptRecord: records that failed their CRC-32C when a quorum
	// replica recovered; they are dropped and refilled from the other
	// owners by anti-entropy and read repair.
	corruptRecord = "record"
	// corruptStore: the replica's Pebble store failed to open or recover
	// with a checksum error; it is moved aside and the replica rebuilt,
	// empty, from the other replicas.
	corruptStore = "store"
)

// rebuildable reports whether a replica of this strategy that lost its
// store can be refilled by its peers: quorum replicas can (Merkle
// anti-entropy and read repair copy every key from the other owners, and
// a fresh disk takes a new epoch, so it mints no dot twice).
func rebuildable(strategy string) bool { return strategy == "quorum" }

// openReplica opens the namespace's engine (Pebble under env.Dir, else
// memory) and builds its replica. If the store is found corrupt (the
// engine or the replica's recovery fails with core.ErrCorruption) and the
// strategy is rebuildable, the store is moved aside to
// DIR/pebble.corrupt-TIME, the event logged and counted, and the replica
// starts from an empty store that its peers refill. Records that fail
// their checksum at recovery are dropped by the replica itself and
// reported here.
func (c *cluster) openReplica(env StrategyEnv, f consistency.Factory) (core.Engine, consistency.Replica, error) {
	eng, rep, err := c.tryOpenReplica(env, f)
	if err != nil && errors.Is(err, causal.ErrLostReplication) && env.Dir != "" {
		return c.rebuildCausal(env, f, err)
	}
	if err == nil || !errors.Is(err, core.ErrCorruption) || env.Dir == "" || !rebuildable(env.Spec.Strategy) {
		return eng, rep, err
	}
	dir := storeDir(env)
	aside := asideName(dir)
	if rerr := renameDurably(dir, aside); rerr != nil {
		return nil, nil, fmt.Errorf("node: namespace %s: store corrupt (%v) and cannot be moved aside: %w", env.Spec.Name, err, rerr)
	}
	env.Logger.Error("replica store is corrupt: moved aside; the replica restarts empty and the other replicas rebuild it",
		"err", err, "moved_to", aside)
	c.countCorruption(env, corruptStore, 1)
	return c.tryOpenReplica(env, f)
}

// storeDir is the directory of env's replica store: DIR/pebble.
func storeDir(env StrategyEnv) string { return filepath.Join(env.Dir, "pebble") }

// renameDurably renames from to to, in one directory, and syncs that
// directory: a rename is durable only once its parent is synced (without
// it a crash could bring a moved store back under its old name).
func renameDurably(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	return syncDir(filepath.Dir(to))
}

// asideName is where a corrupt store dir is moved: DIR.corrupt-TIME.
func asideName(dir string) string {
	return fmt.Sprintf("%s.corrupt-%s", dir, time.Now().UTC().Format("20060102T150405.000000000"))
}

// rebuildName is where rebuildCausal builds the fresh store before it
// takes dir's name: DIR.rebuild.
func rebuildName(dir string) string { return dir + ".rebuild" }

// rebuildCausal rebuilds a siblings-mode causal store whose replication
// entries are corrupt (cause wraps causal.ErrLostReplication): the
// entries that still decode, the clock and a rebuild mark are written
// into a fresh store at DIR/pebble.rebuild (causal.PrepareRebuild), the
// corrupt store is moved aside to DIR/pebble.corrupt-TIME (kept for
// forensics), the fresh one takes its place, and the replica starts
// rebuilding from the other regions (it refuses its keys until then). A
// namespace with a single region has no other copy: the open fails,
// saying so, and nothing is moved.
func (c *cluster) rebuildCausal(env StrategyEnv, f consistency.Factory, cause error) (core.Engine, consistency.Replica, error) {
	dir := storeDir(env)
	tmp := rebuildName(dir)
	fail := func(err error) (core.Engine, consistency.Replica, error) {
		os.RemoveAll(tmp)
		return nil, nil, fmt.Errorf("node: namespace %s: store corrupt (%v) and cannot be rebuilt: %w", env.Spec.Name, cause, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fail(err)
	}
	params, err := c.causalParams(env.Spec.Params)
	if err != nil {
		return fail(err)
	}
	opts := pebbleengine.Options{Sync: core.SyncNever, Logger: env.Logger, Cache: env.Cache}
	old, err := pebbleengine.Open(dir, opts)
	if err != nil {
		return fail(err)
	}
	fresh, err := pebbleengine.Open(tmp, opts)
	if err != nil {
		old.Close()
		return fail(err)
	}
	rep, err := causal.PrepareRebuild(consistency.Config{ID: consistency.NodeID(c.self), Peers: c.ringIDs(), Engine: old, Params: params}, fresh)
	old.Close()
	if cerr := fresh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	// Ordering rule: the corrupt store moves aside before the fresh one
	// takes its name; a crash in between leaves only DIR/pebble.rebuild,
	// which tryOpenReplica puts in place.
	aside := asideName(dir)
	if err := os.Rename(dir, aside); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, nil, fmt.Errorf("node: namespace %s: rebuilt store not put in place: %w", env.Spec.Name, err)
	}
	// Both renames are durable only once the parent directory is synced.
	if err := syncDir(env.Dir); err != nil {
		return nil, nil, fmt.Errorf("node: namespace %s: rebuilt store put in place: %w", env.Spec.Name, err)
	}
	env.Logger.Error("causal store lost replication entries: moved aside; the node rebuilds it from the other regions (its keys are refused until then) and logs every write no region holds as \"version lost\"",
		"err", cause, "moved_to", aside, "salvaged_entries", rep.Salvaged, "corrupt_entries", len(rep.Lost), "own_keys", rep.OwnKeys, "unreadable_records", rep.BadRecords)
	c.countCorruption(env, corruptStore, 1)
	return c.tryOpenReplica(env, f)
}

func (c *cluster) tryOpenReplica(env StrategyEnv, f consistency.Factory) (core.Engine, consistency.Replica, error) {
	var eng core.Engine
	if env.Dir == "" {
		eng = core.NewMemEngine()
	} else {
		// A crash between rebuildCausal's two renames left the rebuilt
		// store alone: put it in place.
		dir := storeDir(env)
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if _, err := os.Stat(rebuildName(dir)); err == nil {
				if err := renameDurably(rebuildName(dir), dir); err != nil {
					return nil, nil, fmt.Errorf("node: namespace %s: put the rebuilt store in place: %w", env.Spec.Name, err)
				}
			}
		}
		// The host syncs before anything the replica produced leaves the
		// node (group commit); Pebble's own commits never sync.
		pe, err := pebbleengine.Open(dir, pebbleengine.Options{Sync: core.SyncNever, Logger: env.Logger, Cache: env.Cache})
		if err != nil {
			return nil, nil, err
		}
		eng = pe
	}
	params := env.Spec.Params
	if env.Spec.Strategy == "causal" {
		// The replica's peers are the current members: its regions
		// parameter must place exactly them.
		p, err := c.causalParams(params)
		if err != nil {
			eng.Close()
			return nil, nil, fmt.Errorf("namespace %s: %w", env.Spec.Name, err)
		}
		params = p
	}
	rep, err := f(consistency.Config{
		ID:     consistency.NodeID(c.self),
		Peers:  c.ringIDs(),
		Engine: eng,
		Rand:   c.replicaRand(env.Spec.Name),
		Params: params,
	})
	if err != nil {
		eng.Close()
		return nil, nil, err
	}
	if cr, ok := rep.(causalRinger); ok {
		// Ordering rule: the member list (and a change under way) before
		// the replica is hosted, so that it never routes by the list it
		// was built from (the new one) while a change is under way.
		cm, err := causalMembership(c.membership(), env.Spec.Params["regions"])
		if err == nil {
			err = cr.SetMembership(time.Now(), cm)
		}
		if err != nil {
			eng.Close()
			return nil, nil, fmt.Errorf("namespace %s: %w", env.Spec.Name, err)
		}
	}
	if q, ok := rep.(interface{ Stats() quorum.Stats }); ok {
		if k := q.Stats().Corrupt; k > 0 {
			env.Logger.Error("records failed their checksum at recovery: dropped; anti-entropy and read repair rebuild them from the other replicas",
				"records", k)
			c.countCorruption(env, corruptRecord, k)
		}
	}
	return eng, rep, nil
}

func (c *cluster) countCorruption(env StrategyEnv, kind string, n int) {
	if env.Samples != nil {
		env.Samples([]consistency.Sample{{Name: corruptionSample, Label: kind, Value: float64(n)}})
	}
}
