package bench

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/dialkv/dialkv/core"
)

// Mix is a read/write mix: ReadPct percent of operations are reads (GET),
// the rest writes (SET).
type Mix struct {
	Name    string
	ReadPct int
}

// ParseMix parses a --workload value: "read-only" (100/0) or "R/W" with
// R+W = 100, such as the YCSB-like "95/5", "70/30" and "50/50".
func ParseMix(s string) (Mix, error) {
	switch s {
	case "read-only", "readonly", "ro":
		return Mix{Name: "read-only", ReadPct: 100}, nil
	case "write-only", "wo":
		return Mix{Name: "write-only", ReadPct: 0}, nil
	}
	r, w, ok := strings.Cut(s, "/")
	if ok {
		rp, err1 := strconv.Atoi(r)
		wp, err2 := strconv.Atoi(w)
		if err1 == nil && err2 == nil && rp >= 0 && wp >= 0 && rp+wp == 100 {
			return Mix{Name: s, ReadPct: rp}, nil
		}
	}
	return Mix{}, fmt.Errorf("--workload %q: want read-only, write-only or READ/WRITE percentages adding up to 100 (95/5, 70/30, 50/50)", s)
}

// KeyChooser picks key indexes in [0, n).
type KeyChooser interface {
	Next(r *rand.Rand) int
}

// Uniform picks every key with the same probability.
type Uniform struct{ N int }

// Next returns a key index.
func (u Uniform) Next(r *rand.Rand) int { return r.IntN(u.N) }

// Zipfian is YCSB's scrambled zipfian distribution: the popularity of the
// i-th most popular item is proportional to 1/i^θ (θ = 0.99 by default),
// computed with the method of Gray et al. ("Quickly generating
// billion-record synthetic databases", as in YCSB's ZipfianGenerator), and
// the rank is hashed (FNV-1a) so that popular keys are spread over the
// keyspace rather than clustered at its start. It is immutable after
// NewZipfian and safe to share between goroutines.
type Zipfian struct {
	n                        int
	theta, alpha, zetan, eta float64
	half                     float64 // 1 + 0.5^θ
	scramble                 bool
}

// NewZipfian prepares a zipfian distribution over n items. It takes O(n)
// time once (the zeta constant).
func NewZipfian(n int, theta float64, scramble bool) (*Zipfian, error) {
	if n < 1 {
		return nil, fmt.Errorf("zipfian: %d items: need at least 1", n)
	}
	if !(theta > 0 && theta < 1) {
		return nil, fmt.Errorf("zipfian: theta %v: need 0 < theta < 1", theta)
	}
	zetan := zeta(n, theta)
	z := &Zipfian{
		n:        n,
		theta:    theta,
		alpha:    1 / (1 - theta),
		zetan:    zetan,
		half:     1 + math.Pow(0.5, theta),
		scramble: scramble,
	}
	if n > 1 {
		z.eta = (1 - math.Pow(2/float64(n), 1-theta)) / (1 - zeta(2, theta)/zetan)
	}
	return z, nil
}

func zeta(n int, theta float64) float64 {
	sum := 0.0
	for i := 1; i <= n; i++ {
		sum += 1 / math.Pow(float64(i), theta)
	}
	return sum
}

// Rank returns a popularity rank in [0, n): 0 is the most popular.
func (z *Zipfian) Rank(r *rand.Rand) int {
	u := r.Float64()
	uz := u * z.zetan
	if uz < 1 || z.n == 1 {
		return 0
	}
	if uz < z.half {
		return 1
	}
	v := int(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	if v >= z.n {
		v = z.n - 1
	}
	return v
}

// Next returns a key index.
func (z *Zipfian) Next(r *rand.Rand) int {
	k := z.Rank(r)
	if !z.scramble {
		return k
	}
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(uint64(k) >> (8 * i))
	}
	h.Write(b[:])
	return int(h.Sum64() % uint64(z.n))
}

// NewKeyChooser returns the chooser for a --dist value.
func NewKeyChooser(dist string, n int) (KeyChooser, error) {
	if n < 1 {
		return nil, fmt.Errorf("--keys %d: need at least 1", n)
	}
	switch dist {
	case "uniform":
		return Uniform{N: n}, nil
	case "zipfian":
		return NewZipfian(n, 0.99, true)
	}
	return nil, fmt.Errorf("--dist %q: want uniform or zipfian", dist)
}

// Key is the name of key index i ("bench:0000000042"): fixed width, so
// every key has the same size.
func Key(i int) []byte {
	return appendKey(make([]byte, 0, 16), i)
}

// appendKey appends the name of key index i (Key) to dst.
func appendKey(dst []byte, i int) []byte {
	var digits [20]byte
	s := strconv.AppendInt(digits[:0], int64(i), 10)
	dst = append(dst, "bench:"...)
	for range 10 - len(s) {
		dst = append(dst, '0')
	}
	return append(dst, s...)
}

// Generator makes the commands of one worker. It is not safe for concurrent
// use: give each worker its own (they can share the KeyChooser).
type Generator struct {
	mix   Mix
	keys  KeyChooser
	r     *rand.Rand
	pool  []byte // random printable bytes; values are windows of it
	vsize int
}

// NewGenerator returns a generator seeded with seed.
func NewGenerator(mix Mix, keys KeyChooser, valueSize int, seed uint64) *Generator {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	pool := make([]byte, valueSize+4096)
	for i := range pool {
		pool[i] = byte('a' + r.IntN(26))
	}
	return &Generator{mix: mix, keys: keys, r: r, pool: pool, vsize: valueSize}
}

// IsRead draws whether the next operation (or batch) is a read.
func (g *Generator) IsRead() bool {
	return g.r.IntN(100) < g.mix.ReadPct
}

// Read returns a GET of a chosen key.
func (g *Generator) Read() core.Command {
	return core.Command{Name: "GET", Args: [][]byte{Key(g.keys.Next(g.r))}}
}

// Write returns a SET of a chosen key to a fresh value.
func (g *Generator) Write() core.Command {
	return core.Command{Name: "SET", Args: [][]byte{Key(g.keys.Next(g.r)), g.Value()}}
}

// Value returns a value of the configured size.
func (g *Generator) Value() []byte {
	off := g.r.IntN(len(g.pool) - g.vsize + 1)
	return g.pool[off : off+g.vsize : off+g.vsize]
}

// BatchReuse is Batch (the same commands from the same draws) for a
// caller that is done with the batch cmds held before — nothing refers to
// its keys or argument lists any more (the event-loop client encodes a
// request before it makes the next): each command's key and argument list
// are written into the storage of the previous one, so a batch costs no
// allocation once every command has had one.
func (g *Generator) BatchReuse(cmds []core.Command) (read bool) {
	read = g.IsRead()
	for i := range cmds {
		c := &cmds[i]
		var key []byte
		if len(c.Args) > 0 {
			key = c.Args[0][:0]
		}
		if cap(c.Args) < 2 {
			c.Args = make([][]byte, 0, 2)
		}
		// The draws in Read's and Write's order: the key, then the value.
		key = appendKey(key, g.keys.Next(g.r))
		if read {
			c.Name, c.Args = "GET", append(c.Args[:0], key)
		} else {
			c.Name, c.Args = "SET", append(c.Args[:0], key, g.Value())
		}
	}
	return read
}

// Batch fills cmds with one batch: all reads or all writes, drawn once per
// batch from the mix (so that read and write latencies stay separate). It
// reports whether the batch is a read batch.
func (g *Generator) Batch(cmds []core.Command) (read bool) {
	read = g.IsRead()
	for i := range cmds {
		if read {
			cmds[i] = g.Read()
		} else {
			cmds[i] = g.Write()
		}
	}
	return read
}
