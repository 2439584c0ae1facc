package causal

import (
	"fmt"
	"sort"
	"time"
)

// Version orders the writes of one key: a hybrid logical clock reading
// (Wall in Unix milliseconds, Logical) and the id of the node that made the
// write, which breaks ties, so every write's version is unique and all
// regions order two writes the same way (last-writer-wins).
type Version struct {
	Wall    int64  `json:"w"`
	Logical uint32 `json:"l,omitempty"`
	Node    string `json:"n"`
}

// IsZero reports whether v is the version of a key never written.
func (v Version) IsZero() bool { return v.Wall == 0 && v.Logical == 0 && v.Node == "" }

// Less orders versions by wall time, then logical counter, then node id.
func (v Version) Less(o Version) bool {
	if v.Wall != o.Wall {
		return v.Wall < o.Wall
	}
	if v.Logical != o.Logical {
		return v.Logical < o.Logical
	}
	return v.Node < o.Node
}

// AtLeast reports v >= o.
func (v Version) AtLeast(o Version) bool { return !v.Less(o) }

func (v Version) String() string { return fmt.Sprintf("%d.%d@%s", v.Wall, v.Logical, v.Node) }

// hlc is a hybrid logical clock: it never goes backwards, follows the
// physical clock when that is ahead, and moves past every remote reading it
// has seen, so a write is always newer than everything its node had seen.
type hlc struct {
	wall    int64
	logical uint32
}

// next returns a new reading for a local event at physical time now.
func (c *hlc) next(now time.Time) (int64, uint32) {
	p := now.UnixMilli()
	if p > c.wall {
		c.wall, c.logical = p, 0
	} else {
		c.logical++
	}
	return c.wall, c.logical
}

// observe moves the clock past a remote reading.
func (c *hlc) observe(v Version) {
	if v.Wall > c.wall || (v.Wall == c.wall && v.Logical > c.logical) {
		c.wall, c.logical = v.Wall, v.Logical
	}
}

// Dep is one causal dependency: the write of Key with version V.
type Dep struct {
	Key string  `json:"k"`
	V   Version `json:"v"`
}

// mergeDeps returns the union of deps keeping the newest version per key
// (perNode: per key and origin node), sorted by key and node (deterministic
// tokens and messages).
func mergeDeps(perNode bool, a []Dep, b ...Dep) []Dep {
	type id struct{ key, node string }
	m := make(map[id]Version, len(a)+len(b))
	for _, set := range [][]Dep{a, b} {
		for _, d := range set {
			k := id{key: d.Key}
			if perNode {
				k.node = d.V.Node
			}
			if cur, ok := m[k]; !ok || cur.Less(d.V) {
				m[k] = d.V
			}
		}
	}
	out := make([]Dep, 0, len(m))
	for k, v := range m {
		out = append(out, Dep{Key: k.key, V: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return out[i].V.Node < out[j].V.Node
	})
	return out
}

// covers reports whether a version in over, from v's node, is at least v.
func covers(over []Version, v Version) bool {
	for _, o := range over {
		if o.Node == v.Node && o.AtLeast(v) {
			return true
		}
	}
	return false
}

// seenOf returns the newest version from node in seen (zero if none).
func seenOf(seen []Version, node string) Version {
	for _, v := range seen {
		if v.Node == node {
			return v
		}
	}
	return Version{}
}
