package core

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ExpireStep removes up to max keys whose expiry time is before now, in
// expiry order, in one atomic batch. It is the incremental background
// sweep; the caller drives it with its own clock (reads already treat
// expired keys as absent). It returns how many keys it removed.
func (s *Store) ExpireStep(now time.Time, max int) (int, error) {
	o := s.newOp(now)
	lower := []byte{pfxExpiry}
	upper := expiryKey(o.nowMs, nil) // entries with expire-at < now
	it := s.e.NewIter(lower, upper)
	type due struct {
		at  int64
		key []byte
	}
	var todo []due
	for it.First(); it.Valid() && len(todo) < max; it.Next() {
		k := it.Key()
		if len(k) < 9 {
			continue
		}
		todo = append(todo, due{int64(binary.BigEndian.Uint64(k[1:9])), bytes.Clone(k[9:])})
	}
	if err := it.Close(); err != nil {
		return 0, fmt.Errorf("core: expire step: %w", err)
	}
	removed := 0
	for _, d := range todo {
		r, err := o.loadRaw(d.key)
		if err != nil {
			o.discard()
			return 0, fmt.Errorf("core: expire step: %w", err)
		}
		if r == nil || r.expireAt != d.at {
			o.delete(expiryKey(d.at, d.key)) // stale queue entry
			continue
		}
		if !o.isExpired(r) {
			continue
		}
		if _, err := o.del(d.key); err != nil {
			o.discard()
			return 0, fmt.Errorf("core: expire step: %w", err)
		}
		removed++
	}
	if err := o.commit(); err != nil {
		return 0, fmt.Errorf("core: expire step: %w", err)
	}
	return removed, nil
}

// Dump returns every live key with a canonical rendering of its type and
// value, for convergence checks. Versions and TTLs are left out: replicas of
// eventually consistent strategies may assign different versions.
// Renderings: `string "v"`, `list ["a" "b"]`, `set ["a" "b"]` (sorted),
// `hash {"f":"v" ...}` (sorted by field), `zset ["m":1.5 ...]` (by score,
// then member).
func (s *Store) Dump(now time.Time) (map[string]string, error) {
	o := &op{s: s, now: now, nowMs: now.UnixMilli()} // not the shared scratch op
	out := map[string]string{}
	it := s.e.NewIter([]byte{pfxData}, []byte{pfxData + 1})
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		key := bytes.Clone(it.Key()[1:])
		r, err := decodeRecord(key, it.Value())
		if err != nil {
			s.corrupt.Add(1)
			return nil, err
		}
		if o.isExpired(r) {
			continue
		}
		text, err := renderValue(key, r)
		if err != nil {
			s.corrupt.Add(1)
			return nil, err
		}
		out[string(key)] = text
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("core: dump: %w", err)
	}
	return out, nil
}

func renderValue(key []byte, r *record) (string, error) {
	var b strings.Builder
	q := strconv.Quote
	switch r.typ {
	case TypeString:
		b.WriteString("string " + q(string(r.payload)))
	case TypeList:
		l, err := decodeList(key, r.payload)
		if err != nil {
			return "", err
		}
		b.WriteString("list [")
		for i, e := range l {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(q(string(e)))
		}
		b.WriteByte(']')
	case TypeSet:
		l, err := decodeList(key, r.payload) // members are stored sorted
		if err != nil {
			return "", err
		}
		b.WriteString("set [")
		for i, e := range l {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(q(string(e)))
		}
		b.WriteByte(']')
	case TypeHash:
		h, err := decodeHash(key, r.payload)
		if err != nil {
			return "", err
		}
		fs := make([]string, 0, len(h))
		for f := range h {
			fs = append(fs, f)
		}
		sort.Strings(fs)
		b.WriteString("hash {")
		for i, f := range fs {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(q(f) + ":" + q(string(h[f])))
		}
		b.WriteByte('}')
	case TypeZSet:
		z, err := decodeZSet(key, r.payload)
		if err != nil {
			return "", err
		}
		b.WriteString("zset [")
		for i, e := range sortZSet(z) {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(q(e.member) + ":" + formatFloat(e.score))
		}
		b.WriteByte(']')
	}
	return b.String(), nil
}

// Snapshot stream: "DKVSNAP1", then entries (uvarint len(key), key, uvarint
// len(value), value) of the whole engine key space (data, expiry queue,
// indexes, metadata), then a zero-length key as terminator and a 4-byte
// CRC32C of everything before it.
const snapMagic = "DKVSNAP1"

// SaveSnapshot writes the store's whole state to w.
func (s *Store) SaveSnapshot(w io.Writer) error {
	h := crc32.New(castagnoli)
	bw := bufio.NewWriter(io.MultiWriter(w, h))
	bw.WriteString(snapMagic)
	var lenBuf [binary.MaxVarintLen64]byte
	put := func(p []byte) {
		n := binary.PutUvarint(lenBuf[:], uint64(len(p)))
		bw.Write(lenBuf[:n])
		bw.Write(p)
	}
	it := s.e.NewIter(nil, nil)
	for it.First(); it.Valid(); it.Next() {
		put(it.Key())
		put(it.Value())
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("core: snapshot: read engine: %w", err)
	}
	bw.WriteByte(0)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("core: snapshot: write: %w", err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, h.Sum32())); err != nil {
		return fmt.Errorf("core: snapshot: write: %w", err)
	}
	return nil
}

// RestoreSnapshot replaces the store's whole state with a snapshot written
// by SaveSnapshot, in one atomic batch. A damaged snapshot is rejected with
// an ErrCorruption-wrapped error before anything changes.
func (s *Store) RestoreSnapshot(r io.Reader) error {
	br := &hashReader{r: bufio.NewReader(r), h: crc32.New(castagnoli)}
	magic := make([]byte, len(snapMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapMagic {
		return fmt.Errorf("core: restore: not a dialkv snapshot: %w", ErrCorruption)
	}
	type kv struct{ k, v []byte }
	var entries []kv
	readBytes := func() ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		if n > 1<<31 {
			return nil, errors.New("length out of range")
		}
		p := make([]byte, n)
		_, err = io.ReadFull(br, p)
		return p, err
	}
	for {
		k, err := readBytes()
		if err != nil {
			return fmt.Errorf("core: restore: truncated snapshot (%v): %w", err, ErrCorruption)
		}
		if len(k) == 0 {
			break
		}
		v, err := readBytes()
		if err != nil {
			return fmt.Errorf("core: restore: truncated snapshot (%v): %w", err, ErrCorruption)
		}
		entries = append(entries, kv{k, v})
	}
	want := br.h.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(br.r, sum[:]); err != nil || binary.LittleEndian.Uint32(sum[:]) != want {
		return fmt.Errorf("core: restore: snapshot checksum mismatch: %w", ErrCorruption)
	}
	b := s.e.NewBatch()
	defer b.Close()
	b.DeleteRange([]byte{0}, []byte{0xff})
	for _, e := range entries {
		b.Set(e.k, e.v)
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("core: restore: commit: %w", err)
	}
	return s.load()
}

// hashReader hashes exactly the bytes consumed through it.
type hashReader struct {
	r *bufio.Reader
	h hash.Hash32
}

func (r *hashReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	return n, err
}

func (r *hashReader) ReadByte() (byte, error) {
	c, err := r.r.ReadByte()
	if err == nil {
		r.h.Write([]byte{c})
	}
	return c, err
}
