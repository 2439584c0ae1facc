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
	if err == nil || !errors.Is(err, core.ErrCorruption) || env.Dir == "" || !rebuildable(env.Spec.Strategy) {
		return eng, rep, err
	}
	dir := filepath.Join(env.Dir, "pebble")
	aside := fmt.Sprintf("%s.corrupt-%s", dir, time.Now().UTC().Format("20060102T150405.000000000"))
	if rerr := os.Rename(dir, aside); rerr != nil {
		return nil, nil, fmt.Errorf("node: namespace %s: store corrupt (%v) and cannot be moved aside: %w", env.Spec.Name, err, rerr)
	}
	env.Logger.Error("replica store is corrupt: moved aside; the replica restarts empty and the other replicas rebuild it",
		"err", err, "moved_to", aside)
	c.countCorruption(env, corruptStore, 1)
	return c.tryOpenReplica(env, f)
}

func (c *cluster) tryOpenReplica(env StrategyEnv, f consistency.Factory) (core.Engine, consistency.Replica, error) {
	var eng core.Engine
	if env.Dir == "" {
		eng = core.NewMemEngine()
	} else {
		// The host syncs before anything the replica produced leaves the
		// node (group commit); Pebble's own commits never sync.
		pe, err := pebbleengine.Open(filepath.Join(env.Dir, "pebble"), pebbleengine.Options{Sync: core.SyncNever, Logger: env.Logger, Cache: env.Cache})
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
