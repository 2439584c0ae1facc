package pebbleengine

import (
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// prefillFS wraps the file system Pebble writes through so that each WAL
// file is written ahead with zeros, chunk bytes at a time, before Pebble's
// records reach that part of it.
//
// Why: an fdatasync of a file that grew since the last one must also write
// the file's new size (its inode) to the device; on this project's ext4
// that is a second synchronous device write per sync (block requests per
// fdatasync: 2 appending, 1 overwriting; docs/performance.md, issue 3,
// session 10). Pebble's WAL of a fresh database only appends (its own
// preallocation, fallocate with FALLOC_FL_KEEP_SIZE, leaves the size and
// unwritten extents to be committed at each sync), so under a group commit
// per write every sync paid for it. Written ahead with zeros, the file's
// size and extents change once per chunk instead.
//
// Durability and recovery are unchanged. Reading past the last record,
// Pebble (v2.1.7) finds zeros where its own preallocation would have hit
// the file's end; its reader scans ahead and reports ErrUnexpectedEOF,
// which replay accepts as the end of the last WAL (open.go), as it does
// for a recycled WAL file whose old contents follow the last record. An
// older WAL ends with its EOF trailer before any zeros, and a replayed WAL
// is flushed before a new one is created, so a zero-tailed WAL never
// becomes an older one.
//
// The gain is a young WAL's: Pebble recycles old WAL files (overwritten in
// place: their size no longer changes at a sync), so once files are reused
// (after some tens of MB of WAL since the open) prefill changes little. Its
// cost: the zeros of a chunk are written back by the next sync, 1 MiB once
// per chunk (a longer sync then).
type prefillFS struct {
	vfs.FS
	chunk int64
}

// isWAL reports whether name is one of Pebble's WAL files (NNNNNN.log).
func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

// Create creates name; a WAL file is returned wrapped (prefillFile).
func (fs prefillFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || !isWAL(name) {
		return f, err
	}
	return &prefillFile{File: f, chunk: fs.chunk}, nil
}

// ReuseForWrite reuses a recycled WAL file: it is already written up to its
// old size, so only writes beyond that extend it (with zeros ahead).
func (fs prefillFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil || !isWAL(newname) {
		return f, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pebbleengine: stat reused WAL %s: %w", newname, err)
	}
	return &prefillFile{File: f, chunk: fs.chunk, filled: st.Size()}, nil
}

// Unwrap returns the wrapped file system (vfs.FS).
func (fs prefillFS) Unwrap() vfs.FS { return fs.FS }

// prefillFile is a WAL file written ahead with zeros. Pebble writes a WAL
// sequentially from one goroutine at a time (its LogWriter's flush loop),
// so off and filled need no lock.
type prefillFile struct {
	vfs.File
	chunk  int64
	off    int64 // where the next Write lands
	filled int64 // [0, filled) has been written (records or zeros)
}

// Write writes p at the file offset, first writing zeros from the end of
// what has been written to chunk bytes past the end of p if p would go past
// it. The zeros are written with WriteAt, which leaves the file offset
// alone, and reach the device with the next sync, like p.
func (f *prefillFile) Write(p []byte) (int, error) {
	if end := f.off + int64(len(p)); end > f.filled {
		to := (end/f.chunk + 1) * f.chunk
		if err := f.zero(f.filled, to); err != nil {
			return 0, err
		}
		f.filled = to
	}
	n, err := f.File.Write(p)
	f.off += int64(n)
	return n, err
}

// zero writes zeros over [from, to).
func (f *prefillFile) zero(from, to int64) error {
	buf := make([]byte, min(to-from, 64<<10))
	for off := from; off < to; {
		n := min(to-off, int64(len(buf)))
		if _, err := f.File.WriteAt(buf[:n], off); err != nil {
			return fmt.Errorf("pebbleengine: write WAL zeros at %d: %w", off, err)
		}
		off += n
	}
	return nil
}
