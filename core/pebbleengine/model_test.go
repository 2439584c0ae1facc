package pebbleengine

import (
	"bytes"
	"errors"
	"sort"

	"github.com/dialkv/dialkv/core"
)

// modelEngine is the trivially correct reference core.Engine of the
// conformance suite: a map copied on every snapshot, sorted on every
// iterator. It is slow and obviously right.
type modelEngine struct {
	m map[string][]byte
}

var _ core.Engine = (*modelEngine)(nil)

func newModelEngine() *modelEngine { return &modelEngine{m: map[string][]byte{}} }

type modelReader struct{ m map[string][]byte }

func (r modelReader) Get(key []byte) ([]byte, error) {
	v, ok := r.m[string(key)]
	if !ok {
		return nil, core.ErrNotFound
	}
	return append([]byte{}, v...), nil
}

func (r modelReader) NewIter(lower, upper []byte) core.Iterator {
	it := &modelIter{pos: -1}
	for k, v := range r.m {
		if lower != nil && k < string(lower) || upper != nil && k >= string(upper) {
			continue
		}
		it.keys = append(it.keys, k)
		it.vals = append(it.vals, v)
	}
	sort.Sort(it)
	return it
}

func (e *modelEngine) Get(key []byte) ([]byte, error) { return modelReader{e.m}.Get(key) }
func (e *modelEngine) NewIter(lower, upper []byte) core.Iterator {
	return modelReader{e.m}.NewIter(lower, upper)
}
func (e *modelEngine) NewBatch() core.Batch { return &modelBatch{e: e} }
func (e *modelEngine) NewSnapshot() core.Snapshot {
	c := make(map[string][]byte, len(e.m))
	for k, v := range e.m {
		c[k] = v
	}
	return modelSnap{modelReader{c}}
}
func (e *modelEngine) Sync() error             { return nil }
func (e *modelEngine) Checkpoint(string) error { return errors.New("model: no checkpoints") }
func (e *modelEngine) Close() error            { return nil }

type modelSnap struct{ modelReader }

func (modelSnap) Close() error { return nil }

type modelIter struct {
	keys []string
	vals [][]byte
	pos  int
}

func (it *modelIter) Len() int           { return len(it.keys) }
func (it *modelIter) Less(i, j int) bool { return it.keys[i] < it.keys[j] }
func (it *modelIter) Swap(i, j int) {
	it.keys[i], it.keys[j] = it.keys[j], it.keys[i]
	it.vals[i], it.vals[j] = it.vals[j], it.vals[i]
}
func (it *modelIter) First() bool { it.pos = 0; return it.Valid() }
func (it *modelIter) SeekGE(key []byte) bool {
	it.pos = sort.SearchStrings(it.keys, string(key))
	return it.Valid()
}
func (it *modelIter) Valid() bool   { return it.pos >= 0 && it.pos < len(it.keys) }
func (it *modelIter) Next() bool    { it.pos++; return it.Valid() }
func (it *modelIter) Key() []byte   { return []byte(it.keys[it.pos]) }
func (it *modelIter) Value() []byte { return it.vals[it.pos] }
func (it *modelIter) Error() error  { return nil }
func (it *modelIter) Close() error  { return nil }

type modelOp struct {
	kind       byte // 's'et, 'd'elete, 'r'ange delete
	key, value []byte
	end        []byte
}

type modelBatch struct {
	e   *modelEngine
	ops []modelOp
}

func (b *modelBatch) Set(key, value []byte) {
	b.ops = append(b.ops, modelOp{kind: 's', key: bytes.Clone(key), value: bytes.Clone(value)})
}
func (b *modelBatch) Delete(key []byte) {
	b.ops = append(b.ops, modelOp{kind: 'd', key: bytes.Clone(key)})
}
func (b *modelBatch) DeleteRange(start, end []byte) {
	b.ops = append(b.ops, modelOp{kind: 'r', key: bytes.Clone(start), end: bytes.Clone(end)})
}
func (b *modelBatch) Len() int { return len(b.ops) }
func (b *modelBatch) Close()   {}
func (b *modelBatch) Commit(bool) error {
	for _, op := range b.ops {
		switch op.kind {
		case 's':
			if op.value == nil {
				op.value = []byte{}
			}
			b.e.m[string(op.key)] = op.value
		case 'd':
			delete(b.e.m, string(op.key))
		case 'r':
			for k := range b.e.m {
				if k >= string(op.key) && k < string(op.end) {
					delete(b.e.m, k)
				}
			}
		}
	}
	b.ops = nil
	return nil
}
