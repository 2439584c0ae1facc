package raftsim

import (
	"sync/atomic"
	"time"

	"github.com/lni/vfs"
)

// disk is one node's private in-memory disk: lni/vfs's strict MemFS (on a
// crash, unsynced data is discarded by ResetToSyncedState) with a fake
// GetDiskUsage, which MemFS lacks. Dragonboat's LogDB accepts only a few
// concrete FS types, so the disk reaches it wrapped by vfs.Wrap with
// diskFaults as the injector.
type disk struct{ *vfs.MemFS }

func (disk) GetDiskUsage(string) (vfs.DiskUsage, error) {
	return vfs.DiskUsage{AvailBytes: 1 << 40, TotalBytes: 1 << 40}, nil
}

// diskFaults injects I/O errors into one node's disk, and freezes it
// during a pause: a disk operation blocks until the pause ends, which
// stops Dragonboat's step worker at its next write, so the paused node
// processes no ticks and no messages (a stop-the-world pause).
type diskFaults struct {
	failWrites  atomic.Bool
	failSyncs   atomic.Bool
	pausedUntil atomic.Int64 // unix nanos (virtual)
}

var _ vfs.Injector = (*diskFaults)(nil)

func (d *diskFaults) MaybeError(op vfs.Op) error {
	d.wait()
	switch {
	case op == vfs.OpWrite && d.failWrites.Load(), op == vfs.OpSync && d.failSyncs.Load():
		return vfs.ErrInjected
	}
	return nil
}

func (d *diskFaults) set(on bool) {
	d.failWrites.Store(on)
	d.failSyncs.Store(on)
}

// wait blocks until the pause ends (raft.Config.BeforeSave: the LogDB
// does not write commit-only updates, so a paused node's step worker must
// also stop at saves that write nothing).
func (d *diskFaults) wait() {
	if u := d.pausedUntil.Load(); u != 0 {
		if wait := time.Until(time.Unix(0, u)); wait > 0 {
			time.Sleep(wait)
		}
	}
}

// pause freezes the disk until u (zero: no pause).
func (d *diskFaults) pause(u time.Time) {
	if u.IsZero() {
		d.pausedUntil.Store(0)
		return
	}
	d.pausedUntil.Store(u.UnixNano())
}
