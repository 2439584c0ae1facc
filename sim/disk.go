package sim

import (
	"errors"
	"fmt"

	"github.com/dialkv/dialkv/core"
)

// errInjectedIO is the error injected disk faults return.
var errInjectedIO = errors.New("sim: injected disk I/O error")

// disk is a node's simulated disk: a core.MemEngine (whose SyncedClone is
// what survives a crash) wrapped to inject faults. An armed I/O error fails
// the next batch commit or sync; an armed corruption flips a byte of the
// next record read (Get or iterator value), which the store's checksums must
// catch. Each armed fault fires once.
type disk struct {
	mem         *core.MemEngine
	failNext    bool
	corruptNext bool
	ioErrors    int // injected I/O errors that fired
	corruptions int // injected corruptions that fired
}

var _ core.Engine = (*disk)(nil)

func newDisk() *disk { return &disk{mem: core.NewMemEngine()} }

// crash returns the disk as it is after a crash: only synced state, armed
// faults kept.
func (d *disk) crash() {
	old := d.mem
	d.mem = old.SyncedClone()
	_ = old.Close()
}

func (d *disk) corrupt(v []byte) []byte {
	if !d.corruptNext || len(v) == 0 {
		return v
	}
	d.corruptNext = false
	d.corruptions++
	v = append([]byte(nil), v...)
	v[len(v)/2] ^= 0x5a
	return v
}

func (d *disk) Get(key []byte) ([]byte, error) {
	v, err := d.mem.Get(key)
	if err != nil {
		return v, err
	}
	return d.corrupt(v), nil
}

func (d *disk) NewIter(lower, upper []byte) core.Iterator {
	return &diskIter{Iterator: d.mem.NewIter(lower, upper), d: d}
}

// NewBatch wraps the engine's batch only while an I/O error is armed (a
// batch is created and committed within one call of the store, during
// which no fault is armed), so that otherwise the store gets the memory
// engine's own batch and its fast paths.
func (d *disk) NewBatch() core.Batch {
	if !d.failNext {
		return d.mem.NewBatch()
	}
	return &diskBatch{Batch: d.mem.NewBatch(), d: d}
}

func (d *disk) NewSnapshot() core.Snapshot { return d.mem.NewSnapshot() }

func (d *disk) Sync() error {
	if d.failNext {
		d.failNext = false
		d.ioErrors++
		return fmt.Errorf("sync: %w", errInjectedIO)
	}
	return d.mem.Sync()
}

func (d *disk) Checkpoint(dir string) error { return d.mem.Checkpoint(dir) }
func (d *disk) Close() error                { return nil }

type diskIter struct {
	core.Iterator
	d *disk
}

func (it *diskIter) Value() []byte { return it.d.corrupt(it.Iterator.Value()) }

type diskBatch struct {
	core.Batch
	d *disk
}

func (b *diskBatch) Commit(sync bool) error {
	if b.d.failNext {
		b.d.failNext = false
		b.d.ioErrors++
		return fmt.Errorf("commit: %w", errInjectedIO)
	}
	return b.Batch.Commit(sync)
}
