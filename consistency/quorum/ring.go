package quorum

import (
	"hash/fnv"
	"sort"
	"strconv"

	"github.com/dialkv/dialkv/core"
)

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return core.Mix64(h.Sum64())
}

// ring is a consistent-hashing ring with virtual nodes. Segment i is the arc
// (token[i-1], token[i]]; every key of a segment has the same walk: the
// distinct nodes met going clockwise from token i. The first n of the walk
// are the key's preference list (its owners); the rest are the fallbacks
// that take hinted writes under sloppy quorum.
type ring struct {
	tokens  []uint64
	walks   [][]nodeID // per segment
	n       int
	members []nodeID
}

func newRing(peers []nodeID, vnodes, n int) *ring {
	type tok struct {
		t    uint64
		node nodeID
	}
	var toks []tok
	for _, p := range peers {
		for v := 0; v < vnodes; v++ {
			toks = append(toks, tok{hashString(string(p) + "#" + strconv.Itoa(v)), p})
		}
	}
	sort.Slice(toks, func(i, j int) bool {
		if toks[i].t != toks[j].t {
			return toks[i].t < toks[j].t
		}
		return toks[i].node < toks[j].node
	})
	r := &ring{n: n, members: append([]nodeID(nil), peers...), tokens: make([]uint64, len(toks)), walks: make([][]nodeID, len(toks))}
	for i, t := range toks {
		r.tokens[i] = t.t
	}
	for i := range toks {
		seen := map[nodeID]bool{}
		var walk []nodeID
		for j := 0; j < len(toks) && len(walk) < len(peers); j++ {
			nd := toks[(i+j)%len(toks)].node
			if !seen[nd] {
				seen[nd] = true
				walk = append(walk, nd)
			}
		}
		r.walks[i] = walk
	}
	if r.n > len(peers) {
		r.n = len(peers)
	}
	return r
}

// segment returns the segment holding key.
func (r *ring) segment(key string) int {
	h := hashString(key)
	i := sort.Search(len(r.tokens), func(i int) bool { return r.tokens[i] >= h })
	if i == len(r.tokens) {
		i = 0
	}
	return i
}

// owners is the preference list of a segment.
func (r *ring) owners(seg int) []nodeID { return r.walks[seg][:r.n] }

// fallbacks are the nodes after the preference list, in walk order.
func (r *ring) fallbacks(seg int) []nodeID { return r.walks[seg][r.n:] }

func (r *ring) isOwner(seg int, id nodeID) bool {
	for _, o := range r.owners(seg) {
		if o == id {
			return true
		}
	}
	return false
}
