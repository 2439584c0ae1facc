package checker

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// history is a read-only index over a history shared by the checks.
type history struct {
	ops       []Op
	keys      []string // sorted
	kinfo     map[string]*keyInfo
	sessions  []string         // sorted
	bySession map[string][]int // op indices in session order (invoke time, then id)
	malformed int
	// noRealTime: never order writes by real time (Options.NoRealTimeOrder)
	noRealTime bool
}

// keyInfo describes the operations on one key.
type keyInfo struct {
	key       string
	ops       []int // indices of well-formed ops on the key, in history order
	register  bool  // some get/put/delete/cas
	counter   bool  // some incr
	set       bool  // some sadd/srem/smembers
	writes    []int // put/cas/delete that may have happened (ok or unknown; cas also CONDFAILED excluded)
	byValue   map[string]int
	unique    bool // every put/cas on the key writes a distinct value
	hasDelete bool
	versioned bool // every ok put/cas/delete carries a version (and there is one): order writes by it
	okWrites  int
	// versionsUntrusted: the writes carry versions, but they are not one
	// order of the key's writes (two writes share one, or a read of a
	// write's value reports another version: per-replica counters).
	versionsUntrusted bool
}

// versionsConsistent reports whether the versions on k can order its
// writes: distinct per acknowledged write, and every read of a write's value
// that reports a version reports that write's.
func (h *history) versionsConsistent(k *keyInfo) bool {
	seen := map[uint64]bool{}
	for _, w := range k.writes {
		op := &h.ops[w]
		if op.Outcome != OK {
			continue
		}
		if seen[op.Version] {
			return false
		}
		seen[op.Version] = true
	}
	for _, i := range k.ops {
		op := &h.ops[i]
		if op.F != FGet || op.Outcome != OK || op.Version == 0 {
			continue
		}
		v, _ := getResult(op)
		if v == nil {
			continue
		}
		if w, ok := k.byValue[*v]; ok && h.ops[w].Version != 0 && h.ops[w].Version != op.Version {
			return false
		}
	}
	return true
}

// uniqueRegister reports whether the key is a plain register whose written
// values are unique: the keys session, causal and staleness apply to.
func (k *keyInfo) uniqueRegister() bool { return k.register && !k.counter && !k.set && k.unique }

func sessionOf(op *Op) string {
	if op.Session != "" {
		return op.Session
	}
	return "client-" + strconv.Itoa(op.Client)
}

// completeTime returns the completion time, or MaxInt64 for an unknown outcome.
func completeTime(op *Op) int64 {
	if op.Complete == nil {
		return math.MaxInt64
	}
	return *op.Complete
}

// writeValue returns the value a put or cas writes.
func writeValue(op *Op) (string, bool) {
	switch op.F {
	case FPut:
		return op.Args[0], true
	case FCAS:
		return op.Args[1], true
	}
	return "", false
}

// mayHaveWritten reports whether op is a register write that may have taken
// effect: put/delete/cas that is ok or unknown.
func mayHaveWritten(op *Op) bool {
	if op.Outcome == Fail {
		return false
	}
	return op.F == FPut || op.F == FDelete || op.F == FCAS
}

// isCondFailed reports a cas whose condition did not hold: the error code
// is CONDFAILED. Linearizability treats it as a read that saw another value.
func isCondFailed(op *Op) bool {
	return op.F == FCAS && op.Outcome == Fail && strings.HasPrefix(op.Error, "CONDFAILED")
}

// ErrMalformed is wrapped by Validate's errors.
var ErrMalformed = errors.New("malformed operation")

// Validate checks that every operation is well formed for the checkers:
// known outcome, the arguments its operation needs, a completion time not
// before its invocation. Operations of unknown kinds are allowed (checks
// ignore them).
func Validate(ops []Op) error {
	for i := range ops {
		if err := validateOp(&ops[i]); err != nil {
			return fmt.Errorf("checker: op %d (line %d): %w: %v", ops[i].ID, i+1, ErrMalformed, err)
		}
	}
	return nil
}

func validateOp(op *Op) error {
	switch op.Outcome {
	case OK, Fail, Unknown:
	default:
		return fmt.Errorf("outcome %q", op.Outcome)
	}
	if op.Outcome != Unknown && op.Complete == nil {
		return fmt.Errorf("outcome %s without a complete time", op.Outcome)
	}
	if op.Complete != nil && *op.Complete < op.Invoke {
		return fmt.Errorf("complete %d before invoke %d", *op.Complete, op.Invoke)
	}
	need := map[string]int{FPut: 1, FCAS: 2, FIncr: 1, FSAdd: 1, FSRem: 1}
	if n, ok := need[op.F]; ok && len(op.Args) < n {
		return fmt.Errorf("%s needs %d argument(s), has %d", op.F, n, len(op.Args))
	}
	if op.F == FIncr {
		if _, err := strconv.ParseInt(op.Args[0], 10, 64); err != nil {
			return fmt.Errorf("incr delta %q is not an integer", op.Args[0])
		}
	}
	return nil
}

func newHistory(ops []Op) *history {
	h := &history{ops: ops, kinfo: map[string]*keyInfo{}, bySession: map[string][]int{}}
	for i := range ops {
		op := &ops[i]
		if validateOp(op) != nil {
			h.malformed++
			continue
		}
		s := sessionOf(op)
		if _, ok := h.bySession[s]; !ok {
			h.sessions = append(h.sessions, s)
		}
		h.bySession[s] = append(h.bySession[s], i)
		k := h.kinfo[op.Key]
		if k == nil {
			k = &keyInfo{key: op.Key, byValue: map[string]int{}, unique: true, versioned: true}
			h.kinfo[op.Key] = k
			h.keys = append(h.keys, op.Key)
		}
		k.ops = append(k.ops, i)
		switch op.F {
		case FGet, FPut, FDelete, FCAS:
			k.register = true
		case FIncr:
			k.counter = true
		case FSAdd, FSRem, FSMembers:
			k.set = true
		}
		if !mayHaveWritten(op) {
			continue
		}
		k.writes = append(k.writes, i)
		if op.Outcome == OK {
			k.okWrites++
			if op.Version == 0 {
				k.versioned = false
			}
		}
		if op.F == FDelete {
			k.hasDelete = true
			continue
		}
		v, _ := writeValue(op)
		if _, dup := k.byValue[v]; dup {
			k.unique = false
		} else {
			k.byValue[v] = i
		}
	}
	sort.Strings(h.keys)
	sort.Strings(h.sessions)
	for _, s := range h.sessions {
		idx := h.bySession[s]
		sort.SliceStable(idx, func(a, b int) bool {
			oa, ob := &ops[idx[a]], &ops[idx[b]]
			if oa.Invoke != ob.Invoke {
				return oa.Invoke < ob.Invoke
			}
			return oa.ID < ob.ID
		})
	}
	h.splitSessionsAtUnknown()
	for _, k := range h.kinfo {
		if k.okWrites == 0 {
			k.versioned = false
		}
		if k.versioned && !h.versionsConsistent(k) {
			k.versioned, k.versionsUntrusted = false, true
		}
	}
	return h
}

// readOf describes what a successful register read observed.
type readOf struct {
	initial bool // the key was absent
	write   int  // index of the write whose value was read, when !initial; -1 when no write wrote it
}

// observed returns what op read on a unique-value register key, and false
// when op is not a successful read there or its result cannot be attributed
// (an absent read on a key with deletes).
func (h *history) observed(k *keyInfo, i int) (readOf, bool) {
	op := &h.ops[i]
	if op.Outcome != OK {
		return readOf{}, false
	}
	var v *string
	switch op.F {
	case FGet:
		var siblings bool
		v, siblings = getResult(op)
		if siblings {
			return readOf{}, false // several values: not attributable to one write
		}
	case FCAS:
		v = &op.Args[0]
	default:
		return readOf{}, false
	}
	if v == nil {
		if k.hasDelete {
			return readOf{}, false
		}
		return readOf{initial: true, write: -1}, true
	}
	w, ok := k.byValue[*v]
	if !ok {
		return readOf{write: -1}, true
	}
	return readOf{write: w}, true
}

// versionOf returns the version of the write a read of op observed: the
// write's own, else the version the read reported (0: unknown).
func (h *history) versionOf(ro readOf, read int) uint64 {
	if ro.write >= 0 && h.ops[ro.write].Version != 0 {
		return h.ops[ro.write].Version
	}
	if read >= 0 && h.ops[read].F == FGet {
		return h.ops[read].Version
	}
	return 0
}

func (h *history) opsOf(idx ...int) []Op {
	out := make([]Op, 0, len(idx))
	seen := map[int]bool{}
	for _, i := range idx {
		if i >= 0 && !seen[i] {
			seen[i] = true
			out = append(out, h.ops[i])
		}
	}
	return out
}

// getResult returns the value a get returned, and whether it returned
// several (siblings under quorum: Values with more than one element). A
// single element of Values counts as the value.
func getResult(op *Op) (*string, bool) {
	if op.Value == nil && len(op.Values) == 1 {
		return &op.Values[0], false
	}
	return op.Value, op.Value == nil && len(op.Values) > 1
}

// splitSessionsAtUnknown ends a session at each operation whose outcome is
// unknown: the operations after it form a new session ("s2/1", "s2/2", ...).
// A session is sequential, but a client that gave up on an operation goes on
// while that operation may still take effect at any later time, so it is not
// ordered before the client's later operations (as Jepsen treats a process
// whose operation timed out as crashed). Checks get fewer constraints, never
// false ones.
func (h *history) splitSessionsAtUnknown() {
	var sessions []string
	by := make(map[string][]int, len(h.bySession))
	for _, s := range h.sessions {
		cur, n := s, 0
		for _, i := range h.bySession[s] {
			if _, ok := by[cur]; !ok {
				sessions = append(sessions, cur)
			}
			by[cur] = append(by[cur], i)
			if h.ops[i].Outcome == Unknown {
				n++
				cur = s + "/" + strconv.Itoa(n)
			}
		}
	}
	sort.Strings(sessions)
	h.sessions, h.bySession = sessions, by
}
