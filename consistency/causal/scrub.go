package causal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strings"
)

// ScrubReport is what one ScrubRecords step found.
type ScrubReport struct {
	Checked int      // stored values read
	Corrupt int      // values that failed their checksum
	Keys    []string // the corrupt values' engine keys (at most 16), for logs
}

// ScrubRecords checks the checksums of the replica's stored values
// (records, replication entries, meta: every value is sealed, see seal) in
// engine-key order, up to limit of them, from cursor (nil: the first), and
// returns the cursor to continue from (nil once the pass is complete). It
// is the background check for values that rot on disk while the node runs.
// It reads and never writes; a corrupt record (v/KEY) it finds starts the
// record's re-fetch from the other regions (noteCorrupt, integrity.go),
// which the next Ticks carry out, as a read that met it would. Other
// corrupt values (queue entries, meta) are only reported: recovery rebuilds
// them at the next restart. Call it on the replica's goroutine like every
// input.
func (r *Replica) ScrubRecords(cursor []byte, limit int) (next []byte, rep ScrubReport, err error) {
	if limit <= 0 {
		limit = 256
	}
	it := r.eng.NewIter(cursor, nil)
	for ok := it.First(); ok; ok = it.Next() {
		if rep.Checked == limit {
			next = append([]byte(nil), it.Key()...)
			break
		}
		rep.Checked++
		if !sealed(it.Key(), it.Value()) {
			rep.Corrupt++
			if k := string(it.Key()); strings.HasPrefix(k, prefixValue) {
				r.noteCorrupt(k[len(prefixValue):])
			}
			if len(rep.Keys) < 16 {
				rep.Keys = append(rep.Keys, string(it.Key()))
			}
		}
	}
	if cerr := it.Close(); cerr != nil {
		return nil, rep, fmt.Errorf("causal: scrub: %w", cerr)
	}
	return next, rep, nil
}

// sealed reports whether v holds a payload whose checksum under key holds.
func sealed(key, v []byte) bool {
	if len(v) < 4 {
		return false
	}
	return binary.BigEndian.Uint32(v) == crc32.Update(crc32.Checksum(key, crcTable), crcTable, v[4:])
}
