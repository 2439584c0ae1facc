package core

import (
	"bytes"
	"time"
)

func scanCommands() []cmdSpec {
	return []cmdSpec{
		{name: "SCAN.PREFIX", handler: cmdScanPrefix, arity: -3, readOnly: true},
		{name: "SCAN.RANGE", handler: cmdScanRange, arity: -4, readOnly: true},
	}
}

const (
	defaultScanCount = 10
	maxScanCount     = 100000
)

// parseCount parses an optional trailing COUNT n (or LIMIT n).
func parseCount(opts [][]byte, word string, def int) (int, *Error) {
	n := def
	for i := 0; i < len(opts); i++ {
		if upper(opts[i]) != word || i+1 >= len(opts) {
			return 0, errSyntax
		}
		v, ok := parseInt(opts[i+1])
		if !ok || v <= 0 {
			return 0, errNotPosLimt
		}
		n = int(min(v, maxScanCount))
		i++
	}
	return n, nil
}

// ScanResult is one page of a scan: the keys in order and the cursor to
// pass back for the next page ("" when the scan is complete).
type ScanResult struct {
	Keys   [][]byte
	Cursor []byte
}

// scanKeys returns up to count live keys in [lower, upper) (user keys; nil
// upper = unbounded) strictly after cursor (empty: from the start).
//
// The cursor is the last key returned, so a scan that runs while writes
// happen returns each key at most once (keys only move forward) and every
// key that exists throughout the scan exactly once. A page never ends on
// the empty key (it takes one more key instead) so that a non-final
// cursor is never "".
func (o *op) scanKeys(lower, upper, cursor []byte, count int) (ScanResult, error) {
	lo := dataKey(lower)
	if len(cursor) > 0 {
		c := append(dataKey(cursor), 0)
		if bytes.Compare(c, lo) > 0 {
			lo = c
		}
	}
	hi := []byte{pfxData + 1}
	if upper != nil {
		hi = dataKey(upper)
	}
	var res ScanResult
	if bytes.Compare(lo, hi) >= 0 {
		return res, nil
	}
	it := o.iter(lo, hi)
	defer it.Close()
	more := false
	for ; it.Valid(); it.Next() {
		key := it.key[1:]
		r, err := decodeRecord(key, it.val)
		if err != nil {
			o.corrupt++
			return res, err
		}
		if o.isExpired(r) {
			continue
		}
		if len(res.Keys) >= count && !(len(res.Keys) == 1 && len(res.Keys[0]) == 0) {
			more = true
			break
		}
		res.Keys = append(res.Keys, bytes.Clone(key))
	}
	if err := it.Error(); err != nil {
		return res, err
	}
	if more {
		res.Cursor = res.Keys[len(res.Keys)-1]
	}
	return res, nil
}

func scanReply(res ScanResult) Reply {
	return Array(Bulk(append([]byte{}, res.Cursor...)), strArray(res.Keys))
}

// cmdScanPrefix: SCAN.PREFIX prefix cursor [COUNT n] -> [next-cursor, [keys]].
func cmdScanPrefix(o *op, a [][]byte) Reply {
	n, e := parseCount(a[2:], "COUNT", defaultScanCount)
	if e != nil {
		return ErrorReply(e)
	}
	res, err := o.scanKeys(a[0], prefixEnd(a[0]), a[1], n)
	if err != nil {
		return fail(err)
	}
	return scanReply(res)
}

// cmdScanRange: SCAN.RANGE start end cursor [COUNT n] -> keys in
// [start, end); an empty end is unbounded.
func cmdScanRange(o *op, a [][]byte) Reply {
	n, e := parseCount(a[3:], "COUNT", defaultScanCount)
	if e != nil {
		return ErrorReply(e)
	}
	var end []byte
	if len(a[1]) > 0 {
		end = a[1]
	}
	res, err := o.scanKeys(a[0], end, a[2], n)
	if err != nil {
		return fail(err)
	}
	return scanReply(res)
}

// Scan runs SCAN.PREFIX from Go: up to count keys with prefix after
// cursor, at time now.
func (s *Store) Scan(now time.Time, prefix, cursor []byte, count int) (ScanResult, error) {
	o := &op{s: s, now: now, nowMs: now.UnixMilli(), counter: s.counter} // read-only: not the shared scratch op
	defer o.discard()
	return o.scanKeys(prefix, prefixEnd(prefix), cursor, count)
}
