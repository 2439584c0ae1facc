package quorum

import "github.com/dialkv/dialkv/consistency"

// Name is the strategy's name (dialkv sim --strategy quorum).
const Name = "quorum"

// The deliberately broken variants (Config.Bug).
const (
	// BugReadRepairDropsSiblings: read repair (and ABD write-back) writes
	// one version with the merged clock — the latest sibling of a register,
	// the last-written replica's copy of a set — so the other concurrent
	// writes are superseded everywhere: acknowledged writes (SETs, SADDs)
	// are lost.
	BugReadRepairDropsSiblings = "read-repair-drops-siblings"
	// BugAAESkipsTombstones: anti-entropy neither hashes nor ships
	// tombstones, so a replica that missed a DEL keeps (and serves) the
	// deleted value forever: deleted data resurrects, replicas diverge.
	BugAAESkipsTombstones = "aae-skips-tombstones"
	// BugLWWNoClock: last-write-wins timestamps come from the node's raw
	// (possibly skewed) clock instead of the HLC, so a write that follows
	// another can lose to it.
	BugLWWNoClock = "lww-no-clock"
)

// Bugs lists the strategy's deliberately broken variants.
func Bugs() []consistency.Bug {
	return []consistency.Bug{
		{Name: BugReadRepairDropsSiblings, Strategy: Name, Breaks: "read repair keeps one version (sibling, or one replica's set): concurrent acknowledged writes are lost"},
		{Name: BugAAESkipsTombstones, Strategy: Name, Breaks: "anti-entropy skips tombstones: a replica that missed a DEL serves the deleted value forever"},
		{Name: BugLWWNoClock, Strategy: Name, Breaks: "LWW uses raw skewed wall clocks, not the HLC: later writes can lose to earlier ones"},
	}
}

func knownBug(name string) bool {
	for _, b := range Bugs() {
		if b.Name == name {
			return true
		}
	}
	return false
}
