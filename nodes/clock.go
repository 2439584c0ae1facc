package nodes

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// Clock is the node's wall clock: the operating system's time plus an
// offset, for clock-skew fault tests (static Go reads the clock through the
// vDSO, so libfaketime cannot shift it, and containers share the host's
// kernel clock). Everything of the node that reads wall time for the data
// reads it here: the local strategy's TTLs, the quorum and causal replicas'
// timestamps (LWW resolution, HLC) and TTLs, the raft proposer's
// timestamp (the state machine's TTL clock). Timers, deadlines and
// latency measurements keep time.Now: an offset must not stall them.
type Clock struct{ off atomic.Int64 }

// NewClock returns a clock offset by off.
func NewClock(off time.Duration) *Clock {
	c := &Clock{}
	c.off.Store(int64(off))
	return c
}

// Now is the operating system's time plus the offset.
func (c *Clock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// Offset is the current offset.
func (c *Clock) Offset() time.Duration { return time.Duration(c.off.Load()) }

// SetOffset changes the offset; later readings move by the difference (the
// clock jumps, forwards or backwards, as a stepped system clock does).
func (c *Clock) SetOffset(d time.Duration) { c.off.Store(int64(d)) }

// Clock returns the node's clock.
func (n *Node) Clock() *Clock { return n.clock }

// ClockState is the JSON of GET and POST /v1/clock.
type ClockState struct {
	Node   string `json:"node"`
	Offset string `json:"offset"` // a Go duration, e.g. "-1.5s"
	Now    string `json:"now"`    // the node's clock, RFC 3339
}

// serveClock is GET /v1/clock (the offset) and POST /v1/clock?offset=D (set
// it; a fault injection for tests, on the admin API like the other calls
// that change the node).
func (n *Node) serveClock(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		d, err := time.ParseDuration(r.URL.Query().Get("offset"))
		if err != nil {
			http.Error(w, fmt.Sprintf("want ?offset=DURATION (e.g. -2s): %v", err), http.StatusBadRequest)
			return
		}
		old := n.clock.Offset()
		n.clock.SetOffset(d)
		n.log.Warn("clock offset changed", "from", old, "to", d)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(ClockState{Node: n.cfg.ID, Offset: n.clock.Offset().String(), Now: n.clock.Now().UTC().Format(time.RFC3339Nano)})
}
