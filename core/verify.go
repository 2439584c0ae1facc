package core

import (
	"bytes"
	"fmt"
)

// VerifyRecords checks up to max data records of the Store, in key order,
// from cursor on (nil: the first record), exactly as Dump reads them: each
// record's CRC-32C and the encoding of its payload (and, through the
// engine, Pebble's block checksums). It returns the cursor to continue
// from (nil once the last record was checked) and how many records it
// checked. A bad record fails with an error wrapping ErrCorruption and is
// counted in Stats.CorruptionsSeen. Expired records are checked too: they
// are still on disk. It only reads: a background scrub calls it page by
// page (consistency/raft/scrub.go).
func (s *Store) VerifyRecords(cursor []byte, max int) (next []byte, n int, err error) {
	if max <= 0 {
		max = 1
	}
	lower := []byte{pfxData}
	if cursor != nil {
		lower = cursor
	}
	it := s.e.NewIter(lower, []byte{pfxData + 1})
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if n == max {
			// The next page starts at this record.
			return bytes.Clone(it.Key()), n, nil
		}
		key := it.Key()[1:]
		r, err := decodeRecord(key, it.Value())
		if err == nil && r.typ != TypeString {
			// A string's payload has no structure to check (rendering it
			// cannot fail); the other types' payloads are decoded.
			_, err = renderValue(key, r)
		}
		if err != nil {
			s.corrupt.Add(1)
			return nil, n, err
		}
		n++
	}
	if err := it.Error(); err != nil {
		return nil, n, fmt.Errorf("core: verify records: %w", err)
	}
	return nil, n, nil
}
