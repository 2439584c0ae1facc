package quorum

import (
	"time"

	"github.com/dialkv/dialkv/core"
)

// Timestamp is a hybrid logical clock reading (core.HLC): the largest
// physical time seen, in Unix nanoseconds, and a logical counter.
type Timestamp = core.HLC

// hlc is the replica's hybrid logical clock (core.Clock), driven by the
// node's own clock readings, which may be skewed.
type hlc struct{ c core.Clock }

// now returns a timestamp greater than every one issued or observed so far.
func (h *hlc) now(wall time.Time) Timestamp { return h.c.Now(wall) }

// observe folds in a timestamp seen in a message or a stored version: later
// timestamps are greater than it.
func (h *hlc) observe(t Timestamp) {
	if h.c.Last().Less(t) {
		h.c.Update(time.Unix(0, 0), t)
	}
}

func (h *hlc) last() Timestamp { return h.c.Last() }
