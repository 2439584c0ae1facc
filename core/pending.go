package core

import "sort"

// Phase-1 placeholders, replaced by their own files.
func listCommands() []cmdSpec  { return nil }
func hashCommands() []cmdSpec  { return nil }
func zsetCommands() []cmdSpec  { return nil }
func scanCommands() []cmdSpec  { return nil }
func indexCommands() []cmdSpec { return nil }

type indexDef struct{ name string }

func decodeIndexDef(b []byte) (*indexDef, error) { return nil, errSyntax }

func (s *Store) indexUpdate(o *op, key []byte, old, nw *record) error { return nil }

type zEntry struct {
	member string
	score  float64
}

func sortZSet(z map[string]float64) []zEntry {
	out := make([]zEntry, 0, len(z))
	for m, s := range z {
		out = append(out, zEntry{m, s})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].score != out[j].score {
			return out[i].score < out[j].score
		}
		return out[i].member < out[j].member
	})
	return out
}
