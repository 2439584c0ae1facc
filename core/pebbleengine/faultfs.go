package pebbleengine

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync/atomic"

	"github.com/dialkv/dialkv/core"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrInjected marks every error FaultFS injects; errors.Is(err, ErrInjected)
// tells an injected fault from a real one.
var ErrInjected = errors.New("pebbleengine: injected I/O fault")

// FaultConfig says which faults a FaultFS injects and how often. Rates are
// probabilities in [0, 1] per file operation.
type FaultConfig struct {
	// Seed decides, with the epoch, which operations fail.
	Seed uint64
	// ReadErrorRate is the chance that a read of a WAL or sstable fails
	// with an error wrapping ErrInjected.
	ReadErrorRate float64
	// CorruptReadRate is the chance that a read of an sstable returns its
	// data with one byte flipped (bit rot, a misdirected read). Pebble's
	// block checksums must catch it.
	CorruptReadRate float64
	// CorruptWAL extends CorruptReadRate to WAL reads during recovery.
	// A corrupted *last* record of the last WAL cannot be told from a torn
	// write, so Pebble drops it (and, if it was synced, a synced write):
	// leave this off unless that is the fault you want to model.
	CorruptWAL bool
	// WriteErrorRate is the chance that a write or sync of a WAL or
	// sstable fails. A failed WAL write makes the engine fail-stop (every
	// later call returns ErrFailed; reopen to recover); a failed sstable
	// write during a flush or compaction is retried by Pebble. MANIFEST,
	// OPTIONS and marker files never fail: Pebble treats those failures as
	// fatal in its background goroutines, which would kill the process, so
	// model them as a process crash instead.
	WriteErrorRate float64
}

func (c FaultConfig) validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"read error", c.ReadErrorRate}, {"corrupt read", c.CorruptReadRate}, {"write error", c.WriteErrorRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("pebbleengine: %s rate %v not in [0, 1]", r.name, r.v)
		}
	}
	return nil
}

// FaultStats counts the faults a FaultFS has injected.
type FaultStats struct {
	ReadErrors   int64
	CorruptReads int64
	WriteErrors  int64
}

// FaultFS is a vfs.FS for the simulator: a crashable memory file system
// (unsynced data can be lost with Crash) that injects I/O errors and
// corrupts reads, and can corrupt stored bytes at rest (CorruptAt).
//
// Which operations fail is a pure function of (seed, epoch, operation kind,
// file, offset), not of a random stream, so a fault hits the same
// operations however Pebble's background goroutines interleave. A fault is
// sticky within an epoch (a bad sector); NextEpoch redraws them. File names
// themselves depend on Pebble's flush and compaction order, so a run is as
// reproducible as Pebble's background work, no more.
//
// Faults start disabled; Enable turns them on. Pass the FaultFS itself as
// Options.FS.
type FaultFS struct {
	vfs.FS // the memory file system, wrapped by the methods below
	mem    *vfs.MemFS
	cfg    FaultConfig
	state  *faultState
}

// faultState is shared by a FaultFS and its files.
type faultState struct {
	on           atomic.Bool
	epoch        atomic.Uint64
	readErrors   atomic.Int64
	corruptReads atomic.Int64
	writeErrors  atomic.Int64
}

var _ vfs.FS = (*FaultFS)(nil)

// NewFaultFS returns an empty FaultFS over vfs.NewCrashableMem.
func NewFaultFS(cfg FaultConfig) (*FaultFS, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return newFaultFS(vfs.NewCrashableMem(), cfg), nil
}

func newFaultFS(mem *vfs.MemFS, cfg FaultConfig) *FaultFS {
	return &FaultFS{FS: mem, mem: mem, cfg: cfg, state: &faultState{}}
}

// Enable turns fault injection on or off (the simulator's liveness phase
// turns it off).
func (f *FaultFS) Enable(on bool) { f.state.on.Store(on) }

// NextEpoch redraws which operations fail.
func (f *FaultFS) NextEpoch() { f.state.epoch.Add(1) }

// Stats returns how many faults have been injected.
func (f *FaultFS) Stats() FaultStats {
	return FaultStats{
		ReadErrors:   f.state.readErrors.Load(),
		CorruptReads: f.state.corruptReads.Load(),
		WriteErrors:  f.state.writeErrors.Load(),
	}
}

// Crash returns the file system as a crash at this moment could leave it:
// synced data survives, each unsynced block or directory entry survives
// with probability keepUnsyncedPercent/100 (drawn from cfg.RNG). The
// result has the same fault configuration, disabled. Close or abandon the
// engine on f afterwards; open a new one on the result.
func (f *FaultFS) Crash(cfg vfs.CrashCloneCfg) *FaultFS {
	return newFaultFS(f.mem.CrashClone(cfg), f.cfg)
}

// CorruptAt flips the bits of mask in the byte at off of the named file,
// as stored: corruption at rest, found by the next read of that byte.
func (f *FaultFS) CorruptAt(name string, off int64, mask byte) error {
	file, err := f.mem.OpenReadWrite(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("pebbleengine: corrupt %s: %w", name, err)
	}
	defer file.Close()
	b := make([]byte, 1)
	if _, err := file.ReadAt(b, off); err != nil {
		return fmt.Errorf("pebbleengine: corrupt %s at %d: %w", name, off, err)
	}
	b[0] ^= mask
	if _, err := file.WriteAt(b, off); err != nil {
		return fmt.Errorf("pebbleengine: corrupt %s at %d: %w", name, off, err)
	}
	return nil
}

// Create creates name and wraps it for fault injection.
func (f *FaultFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.Create(name, category)
	return f.wrap(name, file, err)
}

// Open opens name and wraps it for fault injection.
func (f *FaultFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	file, err := f.FS.Open(name, opts...)
	return f.wrap(name, file, err)
}

// OpenReadWrite opens name for writing and wraps it for fault injection.
func (f *FaultFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	file, err := f.FS.OpenReadWrite(name, category, opts...)
	return f.wrap(name, file, err)
}

// ReuseForWrite renames oldname to newname for reuse (Pebble recycles WAL
// files) and wraps it for fault injection.
func (f *FaultFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.ReuseForWrite(oldname, newname, category)
	return f.wrap(newname, file, err)
}

func (f *FaultFS) wrap(name string, file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	class := fileOther
	switch {
	case strings.HasSuffix(name, ".sst"):
		class = fileTable
	case strings.HasSuffix(name, ".log"):
		class = fileWAL
	}
	if class == fileOther {
		return file, nil
	}
	return &faultFile{File: file, fs: f, name: name, class: class}, nil
}

type fileClass uint8

const (
	fileOther fileClass = iota
	fileWAL
	fileTable
)

// Operation kinds, hashed into fault decisions.
const (
	opRead uint8 = iota + 1
	opCorrupt
	opWrite
	opSync
)

// hit decides whether the operation (kind, file, offset) fails at rate.
func (f *FaultFS) hit(rate float64, kind uint8, name string, off int64) (uint64, bool) {
	if rate <= 0 || !f.state.on.Load() {
		return 0, false
	}
	h := fnv.New64a()
	var buf [25]byte
	putU64(buf[0:], f.cfg.Seed)
	putU64(buf[8:], f.state.epoch.Load())
	buf[16] = kind
	putU64(buf[17:], uint64(off))
	h.Write(buf[:])
	h.Write([]byte(name))
	x := core.Mix64(h.Sum64()) // FNV alone is poorly distributed in its high bits for inputs that differ in a few bytes
	return x, float64(x>>11)/float64(1<<53) < rate
}

func putU64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

// faultFile injects faults into one WAL or sstable. pos tracks the
// sequential read and write offset so that Read and Write faults are keyed
// by offset like ReadAt and WriteAt.
type faultFile struct {
	vfs.File
	fs    *FaultFS
	name  string
	class fileClass
	rpos  int64
	wpos  int64
}

func (f *faultFile) injected(op string, off int64) error {
	return fmt.Errorf("%w: %s %s at offset %d", ErrInjected, op, f.name, off)
}

// beforeRead decides whether a read at off fails.
func (f *faultFile) beforeRead(off int64) error {
	if _, ok := f.fs.hit(f.fs.cfg.ReadErrorRate, opRead, f.name, off); ok {
		f.fs.state.readErrors.Add(1)
		return f.injected("read", off)
	}
	return nil
}

// afterRead may flip one byte of the n bytes read at off.
func (f *faultFile) afterRead(p []byte, n int, off int64) {
	if n <= 0 || (f.class != fileTable && !f.fs.cfg.CorruptWAL) {
		return
	}
	if x, ok := f.fs.hit(f.fs.cfg.CorruptReadRate, opCorrupt, f.name, off); ok {
		f.fs.state.corruptReads.Add(1)
		p[x%uint64(n)] ^= byte(1 + (x>>32)%255)
	}
}

func (f *faultFile) Read(p []byte) (int, error) {
	off := f.rpos
	if err := f.beforeRead(off); err != nil {
		return 0, err
	}
	n, err := f.File.Read(p)
	f.rpos += int64(n)
	f.afterRead(p, n, off)
	return n, err
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.beforeRead(off); err != nil {
		return 0, err
	}
	n, err := f.File.ReadAt(p, off)
	f.afterRead(p, n, off)
	return n, err
}

func (f *faultFile) writeFault(op string, kind uint8, off int64) error {
	if _, ok := f.fs.hit(f.fs.cfg.WriteErrorRate, kind, f.name, off); ok {
		f.fs.state.writeErrors.Add(1)
		return f.injected(op, off)
	}
	return nil
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err := f.writeFault("write", opWrite, f.wpos); err != nil {
		return 0, err
	}
	n, err := f.File.Write(p)
	f.wpos += int64(n)
	return n, err
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.writeFault("write", opWrite, off); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Sync() error {
	if err := f.writeFault("sync", opSync, f.wpos); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *faultFile) SyncData() error {
	if err := f.writeFault("sync", opSync, f.wpos); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *faultFile) SyncTo(length int64) (bool, error) {
	if err := f.writeFault("sync", opSync, length); err != nil {
		return false, err
	}
	return f.File.SyncTo(length)
}
