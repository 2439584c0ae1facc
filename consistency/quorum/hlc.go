package quorum

import (
	"strconv"
	"time"
)

// Timestamp is a hybrid logical clock reading: the largest physical time
// seen (Unix nanoseconds) and a logical counter that orders events within
// it. core has no HLC yet, so the strategy keeps this small one.
type Timestamp struct {
	Wall    int64
	Logical uint32
}

// Less orders timestamps.
func (t Timestamp) Less(o Timestamp) bool {
	if t.Wall != o.Wall {
		return t.Wall < o.Wall
	}
	return t.Logical < o.Logical
}

func (t Timestamp) String() string {
	return strconv.FormatInt(t.Wall, 10) + "." + strconv.FormatUint(uint64(t.Logical), 10)
}

// hlc is a hybrid logical clock (Kulkarni et al., 2014) driven by the node's
// own clock readings, which may be skewed.
type hlc struct{ last Timestamp }

// now returns a timestamp greater than every one issued or observed so far.
func (c *hlc) now(wall time.Time) Timestamp {
	w := wall.UnixNano()
	if w > c.last.Wall {
		c.last = Timestamp{Wall: w}
	} else {
		c.last.Logical++
	}
	return c.last
}

// observe folds in a timestamp seen in a message or a stored version.
func (c *hlc) observe(t Timestamp) {
	if c.last.Less(t) {
		c.last = t
	}
}
