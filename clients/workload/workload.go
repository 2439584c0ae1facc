// Package workload generates client operations for the simulator and the
// load generator: registers (get, put, delete, cas), counters (incr) and
// sets (sadd, srem, smembers), over a uniform, zipfian or hot-key key
// distribution, with every written value unique so that histories are
// checkable, a Jepsen-style set workload (adds, then a final read of
// every set) for measuring lost writes, and a bank workload (transfers
// between accounts, each one transaction, and reads of every account in
// one MGET) whose totals must stay constant (checker.CheckBank).
//
// A Generator returns Ops: the core command (or transaction) to send, plus
// the checker.Op to record. Complete turns the reply into the recorded
// outcome. It imports only core and checker: no network code.
//
// A Generator is not safe for concurrent use; give each goroutine its own
// (values stay unique as long as client numbers do).
package workload

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/core"
)

// Kinds lists the workload kinds with a one-line description.
func Kinds() [][2]string {
	return [][2]string{
		{"register", "get/put/delete/cas on string keys r0..rK (linearizable register model)"},
		{"counter", "incr/get on counter keys c0..cK"},
		{"set", "sadd/srem/smembers on set keys s0..sK"},
		{"mixed", "registers, counters and sets together"},
		{"jepsen-set", "sadd of unique elements to s0..sK, then a final smembers of each (lost writes)"},
		{"bank", "transfers between accounts a0..aK (INCRBY -x, INCRBY +x in one transaction) and MGETs of every account: totals stay 0 (bank check); spans shards"},
	}
}

// KeyDists lists the key distributions.
func KeyDists() []string { return []string{"uniform", "zipfian", "hotkey"} }

// Config configures a Generator.
type Config struct {
	Kind    string // see Kinds
	Keys    int    // keys per type (default 5)
	KeyDist string // uniform (default), zipfian (s=1.1) or hotkey (half the operations hit key 0)
}

// Op is one generated operation.
type Op struct {
	// Exactly one of Cmd and Txn is set.
	Cmd *core.Command
	Txn *core.Txn
	// Rec is the operation to record: F, Key and Args are filled.
	Rec checker.Op
	// Read is true for operations that change nothing.
	Read bool
}

type weighted struct {
	f string
	w float64
}

// Generator draws operations.
type Generator struct {
	cfg     Config
	mix     []weighted
	total   float64
	cdf     []float64 // zipfian key CDF
	counter map[int]int
	// clients are counter's keys in order (guess draws from them).
	clients []int
}

// New validates cfg and returns a Generator.
func New(cfg Config) (*Generator, error) {
	if cfg.Keys <= 0 {
		cfg.Keys = 5
	}
	if cfg.KeyDist == "" {
		cfg.KeyDist = "uniform"
	}
	if cfg.Kind == "" {
		cfg.Kind = "mixed"
	}
	g := &Generator{cfg: cfg, counter: map[int]int{}}
	switch cfg.Kind {
	case "register":
		g.mix = []weighted{{checker.FGet, 50}, {checker.FPut, 30}, {checker.FDelete, 5}, {checker.FCAS, 15}}
	case "counter":
		g.mix = []weighted{{checker.FIncr, 70}, {checker.FGet, 30}}
	case "set":
		g.mix = []weighted{{checker.FSAdd, 60}, {checker.FSRem, 10}, {checker.FSMembers, 30}}
	case "mixed":
		g.mix = []weighted{{checker.FGet, 25}, {checker.FPut, 20}, {checker.FDelete, 3}, {checker.FCAS, 7},
			{checker.FIncr, 15}, {"cget", 5}, {checker.FSAdd, 15}, {checker.FSMembers, 10}}
	case "jepsen-set":
		g.mix = []weighted{{checker.FSAdd, 1}}
	case "bank":
		if cfg.Keys < 2 {
			return nil, fmt.Errorf("workload: bank needs at least 2 accounts (keys), not %d", cfg.Keys)
		}
		g.mix = []weighted{{checker.FTransfer, 70}, {checker.FBalances, 30}}
	default:
		return nil, fmt.Errorf("workload: unknown workload %q (want register, counter, set, mixed, jepsen-set or bank)", cfg.Kind)
	}
	for _, m := range g.mix {
		g.total += m.w
	}
	switch cfg.KeyDist {
	case "uniform", "hotkey":
	case "zipfian":
		g.cdf = make([]float64, cfg.Keys)
		sum := 0.0
		for i := range g.cdf {
			sum += 1 / math.Pow(float64(i+1), 1.1)
			g.cdf[i] = sum
		}
		for i := range g.cdf {
			g.cdf[i] /= sum
		}
	default:
		return nil, fmt.Errorf("workload: unknown key distribution %q (want uniform, zipfian or hotkey)", cfg.KeyDist)
	}
	return g, nil
}

func (g *Generator) key(r *rand.Rand, prefix string) string {
	var i int
	switch g.cfg.KeyDist {
	case "zipfian":
		i = sort.SearchFloat64s(g.cdf, r.Float64())
		if i >= g.cfg.Keys {
			i = g.cfg.Keys - 1
		}
	case "hotkey":
		if r.IntN(2) == 0 {
			i = 0
		} else {
			i = r.IntN(g.cfg.Keys)
		}
	default:
		i = r.IntN(g.cfg.Keys)
	}
	return prefix + strconv.Itoa(i)
}

// value returns a value no other call returns: v<client>.<n>.
func (g *Generator) value(client int) string {
	if _, ok := g.counter[client]; !ok {
		i, _ := slices.BinarySearch(g.clients, client)
		g.clients = slices.Insert(g.clients, i, client)
	}
	g.counter[client]++
	return "v" + strconv.Itoa(client) + "." + strconv.Itoa(g.counter[client])
}

// cmdBox holds a command and room for its argument list in one allocation.
type cmdBox struct {
	c    core.Command
	args [2][]byte
}

// cmdOp builds an operation of one command: name (upper case) with key and
// args as its arguments, whose bytes share one array (full slices of it:
// appending to one never overwrites another).
func cmdOp(f, key string, read bool, name string, args ...string) Op {
	n := len(key)
	for _, a := range args {
		n += len(a)
	}
	buf := make([]byte, 0, n)
	box := &cmdBox{c: core.Command{Name: strings.ToUpper(name)}}
	argv := box.args[:0]
	for i := -1; i < len(args); i++ {
		a := key
		if i >= 0 {
			a = args[i]
		}
		l := len(buf)
		buf = append(buf, a...)
		argv = append(argv, buf[l:len(buf):len(buf)])
	}
	box.c.Args = argv
	return Op{Cmd: &box.c, Rec: checker.Op{F: f, Key: key, Args: args}, Read: read}
}

// Next draws the next operation of client (a process number, unique in
// the run; it makes written values unique).
func (g *Generator) Next(r *rand.Rand, client int) Op {
	x := r.Float64() * g.total
	f := g.mix[len(g.mix)-1].f
	for _, m := range g.mix {
		if x < m.w {
			f = m.f
			break
		}
		x -= m.w
	}
	counterOnly := g.cfg.Kind == "counter"
	switch f {
	case checker.FGet:
		if counterOnly {
			return cmdOp(checker.FGet, g.key(r, "c"), true, "GET")
		}
		return cmdOp(checker.FGet, g.key(r, "r"), true, "GET")
	case "cget":
		return cmdOp(checker.FGet, g.key(r, "c"), true, "GET")
	case checker.FPut:
		return cmdOp(checker.FPut, g.key(r, "r"), false, "SET", g.value(client))
	case checker.FDelete:
		return cmdOp(checker.FDelete, g.key(r, "r"), false, "DEL")
	case checker.FCAS:
		// cas k old new: the expected value is one this client may have
		// seen; a register's values are v<client>.<n>, so guess a recent one
		// of any client at random. Most fail; those that succeed are
		// checkable.
		k := g.key(r, "r")
		old := g.guess(r)
		nv := g.value(client)
		t := core.Txn{
			Conds: []core.Condition{{Key: []byte(k), Kind: core.CondValue, Value: []byte(old)}},
			Cmds:  []core.Command{core.Cmd("SET", k, nv)},
		}
		return Op{Txn: &t, Rec: checker.Op{F: checker.FCAS, Key: k, Args: []string{old, nv}}}
	case checker.FIncr:
		d := strconv.Itoa(1 + r.IntN(5))
		return cmdOp(checker.FIncr, g.key(r, "c"), false, "INCRBY", d)
	case checker.FSAdd:
		return cmdOp(checker.FSAdd, g.key(r, "s"), false, "SADD", g.value(client))
	case checker.FSRem:
		return cmdOp(checker.FSRem, g.key(r, "s"), false, "SREM", g.guess(r))
	case checker.FSMembers:
		return cmdOp(checker.FSMembers, g.key(r, "s"), true, "SMEMBERS")
	case checker.FTransfer:
		from := g.key(r, "a")
		to := g.key(r, "a")
		for to == from {
			to = "a" + strconv.Itoa(r.IntN(g.cfg.Keys))
		}
		x := strconv.Itoa(1 + r.IntN(20))
		t := core.Txn{Cmds: []core.Command{core.Cmd("INCRBY", from, "-"+x), core.Cmd("INCRBY", to, x)}}
		return Op{Txn: &t, Rec: checker.Op{F: checker.FTransfer, Args: []string{from, to, x}}}
	case checker.FBalances:
		return g.balances()
	}
	panic("workload: unreachable op " + f)
}

// balances is a read of every account in one MGET.
func (g *Generator) balances() Op {
	accts := make([]string, g.cfg.Keys)
	args := make([][]byte, g.cfg.Keys)
	for i := range accts {
		accts[i] = "a" + strconv.Itoa(i)
		args[i] = []byte(accts[i])
	}
	return Op{Cmd: &core.Command{Name: "MGET", Args: args}, Rec: checker.Op{F: checker.FBalances, Args: accts}, Read: true}
}

// guess returns a value some client has probably written.
func (g *Generator) guess(r *rand.Rand) string {
	if len(g.clients) == 0 {
		return "v0.1"
	}
	c := g.clients[r.IntN(len(g.clients))]
	n := g.counter[c]
	back := r.IntN(3)
	if n-back >= 1 {
		n -= back
	}
	return "v" + strconv.Itoa(c) + "." + strconv.Itoa(n)
}

// Final returns the operations to run after the workload, once the cluster
// has healed: a read of every key the workload may have touched (for
// jepsen-set, the final read of every set).
func (g *Generator) Final() []Op {
	var out []Op
	add := func(prefix, f, name string) {
		for i := 0; i < g.cfg.Keys; i++ {
			out = append(out, cmdOp(f, prefix+strconv.Itoa(i), true, name))
		}
	}
	switch g.cfg.Kind {
	case "register":
		add("r", checker.FGet, "GET")
	case "counter":
		add("c", checker.FGet, "GET")
	case "set", "jepsen-set":
		add("s", checker.FSMembers, "SMEMBERS")
	case "bank":
		out = append(out, g.balances())
	case "mixed":
		add("r", checker.FGet, "GET")
		add("c", checker.FGet, "GET")
		add("s", checker.FSMembers, "SMEMBERS")
	}
	return out
}

// Complete records reply into rec and returns the outcome: errors are
// "fail" (the store changes nothing on error; CodeConditionFailed is a
// failed cas), except consistency.CodeTimeout-style codes ("TIMEOUT"), which
// are "unknown". Reads with no value leave Value nil.
func Complete(rec *checker.Op, reply core.Reply) checker.Outcome {
	rec.Version = reply.Version
	if reply.IsError() {
		if reply.Err != nil {
			rec.Error = reply.Err.Error()
			if reply.Err.Code == "TIMEOUT" {
				return checker.Unknown
			}
		}
		return checker.Fail
	}
	switch rec.F {
	case checker.FGet:
		switch reply.Kind {
		case core.KindBulk, core.KindStatus:
			rec.Value = checker.StrPtr(string(reply.Str))
		case core.KindInt:
			rec.Value = checker.StrPtr(strconv.FormatInt(reply.Int, 10))
		}
	case checker.FIncr, checker.FDelete, checker.FSAdd, checker.FSRem:
		if reply.Kind == core.KindInt {
			rec.Int = checker.Int64Ptr(reply.Int)
		}
	case checker.FSMembers:
		// The members share one string (two allocations, not one per
		// member); the store returns them sorted already.
		n := 0
		for _, a := range reply.Array {
			n += len(a.Str)
		}
		var all strings.Builder
		all.Grow(n)
		for _, a := range reply.Array {
			all.Write(a.Str)
		}
		s := all.String()
		vals := make([]string, len(reply.Array))
		for i, a := range reply.Array {
			vals[i], s = s[:len(a.Str)], s[len(a.Str):]
		}
		if !sort.StringsAreSorted(vals) {
			sort.Strings(vals)
		}
		rec.Values = vals
	case checker.FBalances:
		// In account order; an absent account is "" (balance 0).
		vals := make([]string, len(reply.Array))
		for i, a := range reply.Array {
			vals[i] = string(a.Str)
		}
		rec.Values = vals
	}
	return checker.OK
}

// RecordSiblings records the sibling values of a successful get that found
// several concurrent versions (consistency.Response.Values under quorum):
// the history then carries them in values, with value absent, as
// checker/doc.go asks. Fewer than two values change nothing (the reply's
// single value is already recorded).
func RecordSiblings(rec *checker.Op, values [][]byte) {
	if rec.F != checker.FGet || rec.Error != "" || len(values) < 2 {
		return
	}
	vals := make([]string, len(values))
	for i, v := range values {
		vals[i] = string(v)
	}
	sort.Strings(vals)
	rec.Value, rec.Values = nil, vals
}
