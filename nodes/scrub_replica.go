package nodes

import (
	"errors"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/core"
)

// corruptScrubbed is the corruption kind of causal records the background
// scrub found corrupt: counted here; a corrupt record is re-fetched from
// the other regions by the replica (causal.Replica.ScrubRecords starts
// it, dialkv_corruption_events_total{kind="record-repaired"} counts it;
// integrity.go lists the other kinds).
const corruptScrubbed = "record-scrub"

// Hosted replicas that can check their stored records (on the host's
// goroutine): quorum repairs what it finds, causal only reports it.
type (
	quorumScrubber interface {
		Scrub(cursor []byte, limit int) ([]byte, quorum.ScrubReport, error)
	}
	causalScrubber interface {
		ScrubRecords(cursor []byte, limit int) ([]byte, causal.ScrubReport, error)
	}
)

var (
	_ quorumScrubber = (*quorum.Replica)(nil)
	_ causalScrubber = (*causal.Replica)(nil)
)

// scrubReplica runs a pass over the hosted replica's stored records every
// env.ReplicaScrubEvery (the first one interval after the start) until
// the host stops.
func (c *cluster) scrubReplica(h *ReplicaHost, env StrategyEnv) {
	t := time.NewTimer(env.ReplicaScrubEvery)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		if !c.scrubPass(h, env) {
			return
		}
		t.Reset(env.ReplicaScrubEvery)
	}
}

// scrubPass checks every stored record of the replica, a page at a time on
// the host's goroutine (so it is serialized with the replica's inputs),
// paced to env.ReplicaScrubRate records a second. Corruption is logged at
// error level (found_by=scrub) and counted in
// dialkv_corruption_events_total: kind "record" for quorum records, which
// Scrub has written again from the replica's copy, "record-scrub" for
// causal ones, which stay until the key is written or read (and
// re-fetched). It returns false once the host is stopped.
func (c *cluster) scrubPass(h *ReplicaHost, env StrategyEnv) bool {
	page := 256
	if r := env.ReplicaScrubRate; r > 0 && r < page {
		page = r
	}
	var cursor []byte
	checked, found := 0, 0
	for {
		var (
			next               []byte
			n, corrupt, repair int
			keys               []string
			err                error
			supported          = true
		)
		ok := h.Call(func(r consistency.Replica) {
			switch s := r.(type) {
			case quorumScrubber:
				var rep quorum.ScrubReport
				next, rep, err = s.Scrub(cursor, page)
				n, corrupt, repair, keys = rep.Checked, rep.Corrupt, rep.Repaired, rep.Keys
			case causalScrubber:
				var rep causal.ScrubReport
				next, rep, err = s.ScrubRecords(cursor, page)
				n, corrupt, keys = rep.Checked, rep.Corrupt, rep.Keys
			default:
				supported = false
			}
		})
		if !ok {
			return false
		}
		if !supported {
			return true
		}
		checked += n
		if err != nil {
			env.Logger.Error("replica scrub stopped: reading the store failed", "found_by", "scrub", "err", err, "checked", checked)
			if errors.Is(err, core.ErrCorruption) {
				c.countCorruption(env, corruptStore, 1)
			}
			return true
		}
		if corrupt > 0 {
			found += corrupt
			if env.Spec.Strategy == "quorum" {
				env.Logger.Error("scrub found stored records that failed their checksum: written again from the replica's copy",
					"found_by", "scrub", "records", corrupt, "repaired", repair, "keys", keys)
				c.countCorruption(env, corruptRecord, corrupt)
			} else {
				env.Logger.Error("scrub found stored records that failed their checksum: causal records are re-fetched from the other regions (single region: a read answers CORRUPTION, a write replaces it); queue and meta values are rebuilt at the next restart",
					"found_by", "scrub", "records", corrupt, "keys", keys)
				c.countCorruption(env, corruptScrubbed, corrupt)
			}
		}
		if next == nil {
			env.Logger.Debug("replica scrub pass done", "records", checked, "corrupt", found)
			return true
		}
		cursor = next
		if r := env.ReplicaScrubRate; r > 0 {
			select {
			case <-h.done:
				return false
			case <-time.After(time.Duration(n) * time.Second / time.Duration(r)):
			}
		}
	}
}
