package checker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
)

// Outcome says whether an operation took effect.
type Outcome string

// The outcomes.
const (
	OK      Outcome = "ok"      // it happened, with the recorded result
	Fail    Outcome = "fail"    // it certainly did not happen
	Unknown Outcome = "unknown" // it may or may not have happened (timeout, crash)
)

// Operation names used by the workloads and understood by the checkers.
const (
	FGet      = "get"
	FPut      = "put"
	FDelete   = "delete"
	FCAS      = "cas"
	FIncr     = "incr"
	FSAdd     = "sadd"
	FSRem     = "srem"
	FSMembers = "smembers"
	// FTransfer [from, to, amount] moves amount from account from to
	// account to in one transaction; FBalances [accounts...] reads every
	// account at once, values in the same order ("" for an absent
	// account, balance 0). The bank check reads them.
	FTransfer = "transfer"
	FBalances = "balances"
)

// Op is one operation of a history: one line of history.jsonl. The package
// documentation describes every field.
type Op struct {
	ID       int64             `json:"id"`
	Client   int               `json:"client"`
	Session  string            `json:"session,omitempty"`
	F        string            `json:"f"`
	Key      string            `json:"key,omitempty"`
	Args     []string          `json:"args,omitempty"`
	Invoke   int64             `json:"invoke"`
	Complete *int64            `json:"complete,omitempty"`
	Outcome  Outcome           `json:"outcome"`
	Value    *string           `json:"value,omitempty"`
	Values   []string          `json:"values,omitempty"`
	Int      *int64            `json:"int,omitempty"`
	Version  uint64            `json:"version,omitempty"`
	Error    string            `json:"error,omitempty"`
	Node     string            `json:"node,omitempty"`
	Options  map[string]string `json:"options,omitempty"`
	TokenIn  string            `json:"token_in,omitempty"`
	TokenOut string            `json:"token_out,omitempty"`
}

// ReplicaState is one replica's user-visible state after quiescence: one
// line of replicas.jsonl. Data maps each live key to a canonical rendering of
// its value (the same value renders the same on every replica).
type ReplicaState struct {
	Node string            `json:"node"`
	Data map[string]string `json:"data"`
	// Holds, when set, lists the keys this replica is responsible for
	// under a sharded strategy (see consistency.Placement); a listed key
	// missing from Data means the replica holds no live value for it. When
	// Holds is nil the replica is responsible for every key.
	Holds []string `json:"holds,omitempty"`
}

// Outcomes counts ops by outcome: ok, failed, and every other (unknown).
func Outcomes(ops []Op) (ok, failed, unknown int) {
	for i := range ops {
		switch ops[i].Outcome {
		case OK:
			ok++
		case Fail:
			failed++
		default:
			unknown++
		}
	}
	return ok, failed, unknown
}

// StrPtr returns a pointer to s, for Op.Value.
func StrPtr(s string) *string { return &s }

// Int64Ptr returns a pointer to n, for Op.Complete and Op.Int.
func Int64Ptr(n int64) *int64 { return &n }

// Recorder appends operations to a history. It is safe for concurrent use by
// the clients of one run; IDs are assigned in Invoke order.
//
// Use Invoke when an operation starts and Finish when its outcome is known;
// operations never finished are written with outcome "unknown" by Close.
// Operations are written in invocation order.
type Recorder struct {
	mu  sync.Mutex
	ops []*Op
	// chunk and times are where Invoke and Finish take the next Op and
	// completion time from: allocated 256 at a time, never moved (the
	// recorded pointers stay valid).
	chunk   []Op
	times   []int64
	nextID  int64
	flushed int
	w       *bufio.Writer
	closer  io.Closer
	err     error
}

// NewRecorder writes the history to w (nil: keep it in memory only).
func NewRecorder(w io.Writer) *Recorder {
	r := &Recorder{}
	if w != nil {
		r.w = bufio.NewWriter(w)
		if c, ok := w.(io.Closer); ok {
			r.closer = c
		}
	}
	return r
}

// Invoke records the start of op (ID, Outcome and Complete are set by the
// recorder) and returns the recorded operation to pass to Finish.
func (r *Recorder) Invoke(op Op) *Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.ID = r.nextID
	r.nextID++
	op.Outcome = Unknown
	op.Complete = nil
	if len(r.chunk) == cap(r.chunk) {
		r.chunk = make([]Op, 0, recorderChunk)
	}
	r.chunk = append(r.chunk, op)
	p := &r.chunk[len(r.chunk)-1]
	r.ops = append(r.ops, p)
	return p
}

// recorderChunk is how many operations (and completion times) the
// recorder allocates at a time.
const recorderChunk = 256

// Finish records the outcome of op at time complete. For Unknown the
// completion time is left absent.
func (r *Recorder) Finish(op *Op, complete int64, outcome Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Outcome = outcome
	if outcome != Unknown {
		if len(r.times) == cap(r.times) {
			r.times = make([]int64, 0, recorderChunk)
		}
		r.times = append(r.times, complete)
		op.Complete = &r.times[len(r.times)-1]
	}
}

// Ops returns the operations recorded so far, in invocation order. The
// caller must not modify them while clients are still running.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Op, len(r.ops))
	for i, p := range r.ops {
		out[i] = *p
	}
	return out
}

// Close writes every operation (unfinished ones as "unknown") and closes
// the underlying writer if it is an io.Closer.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w == nil {
		return nil
	}
	var line []byte
	for _, p := range r.ops[r.flushed:] {
		line = AppendOpJSON(line[:0], p)
		if _, err := r.w.Write(line); err != nil && r.err == nil {
			r.err = err
		}
	}
	r.flushed = len(r.ops)
	if err := r.w.Flush(); err != nil && r.err == nil {
		r.err = err
	}
	if r.closer != nil {
		if err := r.closer.Close(); err != nil && r.err == nil {
			r.err = err
		}
		r.closer = nil
	}
	return r.err
}

// AppendHistory appends ops as JSON lines to dst: the bytes WriteHistory
// writes.
func AppendHistory(dst []byte, ops []Op) []byte {
	for i := range ops {
		dst = AppendOpJSON(dst, &ops[i])
	}
	return dst
}

// WriteHistory writes ops as JSON lines.
// The bytes are those of encoding/json (see AppendOpJSON).
func WriteHistory(w io.Writer, ops []Op) error {
	var buf []byte
	for i := range ops {
		buf = AppendOpJSON(buf, &ops[i])
		if len(buf) >= 64<<10 || i == len(ops)-1 {
			if _, err := w.Write(buf); err != nil {
				return fmt.Errorf("checker: write history (op %d): %w", ops[i].ID, err)
			}
			buf = buf[:0]
		}
	}
	return nil
}

// ReadHistory parses a history in the JSON Lines format. Errors name the
// line that failed.
func ReadHistory(r io.Reader) ([]Op, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	var ops []Op
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var op Op
		if err := json.Unmarshal(b, &op); err != nil {
			return nil, fmt.Errorf("checker: history line %d: %w", line, err)
		}
		switch op.Outcome {
		case OK, Fail, Unknown:
		default:
			return nil, fmt.Errorf("checker: history line %d: outcome %q is not ok, fail or unknown", line, op.Outcome)
		}
		if op.Outcome != Unknown && op.Complete == nil {
			return nil, fmt.Errorf("checker: history line %d: outcome %q needs a complete time", line, op.Outcome)
		}
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("checker: history line %d: %w", line+1, err)
	}
	return ops, nil
}

// ReadHistoryFile reads a history file.
func ReadHistoryFile(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checker: %w", err)
	}
	defer f.Close()
	return ReadHistory(f)
}
