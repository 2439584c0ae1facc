package quorum

import (
	"fmt"
	"sort"
	"strconv"
	"time"
)

// Resolve modes (Params "resolve").
const (
	ResolveSiblings = "siblings" // concurrent writes are kept; reads return them all
	ResolveLWW      = "lww"      // last write wins on HLC timestamps, ties by node id
	ResolveCRDT     = "crdt"     // counters, sets and maps merge; registers are LWW
	ResolveCustom   = "custom"   // a Resolver merges siblings (NewWithResolver)
)

// Read repair modes (Params "read_repair").
const (
	RepairSync  = "sync"  // repair stale replicas among the R answers before replying
	RepairAsync = "async" // reply at R, repair stale replicas afterwards
	RepairOff   = "off"
)

// Special values for Options.R and Options.W.
const (
	ALL    = -1 // every replica of the preference list (N)
	QUORUM = -2 // N/2+1
	ONE    = 1
)

// params are a namespace's settings, parsed from Config.Params.
type params struct {
	n, r, w, vnodes int
	resolve         string
	sloppy          bool
	maxSiblings     int
	readRepair      string
	mode            string // default Options.Mode: "" or "linearizable"
	hintLimit       int
	timeout         time.Duration // per request
	suspectFor      time.Duration // how long an unresponsive peer is skipped
	hintInterval    time.Duration // hinted-handoff delivery attempts
	aaeInterval     time.Duration // anti-entropy exchanges (one peer each)
	gcGrace         time.Duration // minimum age of a tombstone before GC
	handoff         string        // ring change pushes: HandoffOne or HandoffEach
}

// Ring change handoff modes (Params "handoff"; rebalance.go).
const (
	// HandoffOne: one old owner of a key pushes its object; the others
	// offer a digest and send theirs only to a new owner that holds a
	// different copy.
	HandoffOne = "one"
	// HandoffEach: every old owner pushes its object (before session 6).
	HandoffEach = "each"
)

// paramDefaults lists every Params key with its default.
var paramDefaults = map[string]string{
	"n":             "3",
	"r":             "2",
	"w":             "2",
	"vnodes":        "64",
	"resolve":       ResolveSiblings,
	"sloppy":        "true",
	"max_siblings":  "8",
	"read_repair":   RepairSync,
	"hint_limit":    "10000",
	"timeout":       "1s",
	"suspect_for":   "2s",
	"hint_interval": "200ms",
	"aae_interval":  "500ms",
	"gc_grace":      "10m",
	"mode":          "",
	"handoff":       HandoffOne,
}

// ParamDefaults returns the Params keys the strategy reads with their
// defaults.
func ParamDefaults() map[string]string {
	out := make(map[string]string, len(paramDefaults))
	for k, v := range paramDefaults {
		out[k] = v
	}
	return out
}

func parseParams(in map[string]string, npeers int) (params, error) {
	var keys []string
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := paramDefaults[k]; !ok {
			return params{}, fmt.Errorf("quorum: unknown param %q", k)
		}
	}
	get := func(k string) string {
		if v, ok := in[k]; ok {
			return v
		}
		return paramDefaults[k]
	}
	var p params
	var err error
	ints := []struct {
		k   string
		dst *int
		min int
	}{{"n", &p.n, 1}, {"r", &p.r, 1}, {"w", &p.w, 1}, {"vnodes", &p.vnodes, 1}, {"max_siblings", &p.maxSiblings, 1}, {"hint_limit", &p.hintLimit, 0}}
	for _, x := range ints {
		v, e := strconv.Atoi(get(x.k))
		if e != nil || v < x.min {
			return params{}, fmt.Errorf("quorum: param %s=%q: want an integer >= %d", x.k, get(x.k), x.min)
		}
		*x.dst = v
	}
	durs := []struct {
		k   string
		dst *time.Duration
	}{{"timeout", &p.timeout}, {"suspect_for", &p.suspectFor}, {"hint_interval", &p.hintInterval}, {"aae_interval", &p.aaeInterval}, {"gc_grace", &p.gcGrace}}
	for _, x := range durs {
		*x.dst, err = time.ParseDuration(get(x.k))
		if err != nil || *x.dst <= 0 {
			return params{}, fmt.Errorf("quorum: param %s=%q: want a positive duration", x.k, get(x.k))
		}
	}
	if p.sloppy, err = strconv.ParseBool(get("sloppy")); err != nil {
		return params{}, fmt.Errorf("quorum: param sloppy=%q: want true or false", get("sloppy"))
	}
	p.resolve = get("resolve")
	switch p.resolve {
	case ResolveSiblings, ResolveLWW, ResolveCRDT:
	case ResolveCustom:
		return params{}, fmt.Errorf("quorum: resolve=custom needs a Go Resolver: use NewWithResolver")
	default:
		return params{}, fmt.Errorf("quorum: param resolve=%q: want siblings, lww or crdt", p.resolve)
	}
	p.readRepair = get("read_repair")
	switch p.readRepair {
	case RepairSync, RepairAsync, RepairOff:
	default:
		return params{}, fmt.Errorf("quorum: param read_repair=%q: want sync, async or off", p.readRepair)
	}
	p.handoff = get("handoff")
	if p.handoff != HandoffOne && p.handoff != HandoffEach {
		return params{}, fmt.Errorf("quorum: param handoff=%q: want one or each", p.handoff)
	}
	p.mode = get("mode")
	if p.mode != "" && p.mode != "linearizable" {
		return params{}, fmt.Errorf("quorum: param mode=%q: want linearizable or empty", p.mode)
	}
	if p.mode == "linearizable" && p.r+p.w <= p.n {
		return params{}, fmt.Errorf("quorum: mode=linearizable needs r+w>n (r=%d, w=%d, n=%d)", p.r, p.w, p.n)
	}
	if npeers == 0 {
		return params{}, fmt.Errorf("quorum: no peers")
	}
	if p.n > npeers {
		return params{}, fmt.Errorf("quorum: n=%d exceeds the %d peers", p.n, npeers)
	}
	if p.r > p.n || p.w > p.n {
		return params{}, fmt.Errorf("quorum: r=%d, w=%d: each must be at most n=%d", p.r, p.w, p.n)
	}
	return p, nil
}

// count resolves a per-operation R or W (0: default; ALL, QUORUM).
func (p params) count(v, def int) (int, error) {
	switch {
	case v == 0:
		return def, nil
	case v == ALL:
		return p.n, nil
	case v == QUORUM:
		return p.n/2 + 1, nil
	case v < 0 || v > p.n:
		return 0, fmt.Errorf("%d is not in 1..N=%d (or ALL/QUORUM)", v, p.n)
	}
	return v, nil
}
