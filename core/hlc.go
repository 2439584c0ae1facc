package core

import (
	"fmt"
	"time"
)

// HLC is a hybrid logical clock timestamp (Kulkarni et al., 2014): Wall is
// the largest physical time seen, in Unix nanoseconds, and Logical orders
// events that share a Wall. HLCs are totally ordered by (Wall, Logical) and
// stay close to physical time while respecting causality.
type HLC struct {
	Wall    int64
	Logical uint32
}

// Less reports whether h orders before o.
func (h HLC) Less(o HLC) bool {
	return h.Wall < o.Wall || (h.Wall == o.Wall && h.Logical < o.Logical)
}

// Compare returns -1, 0 or +1.
func (h HLC) Compare(o HLC) int {
	switch {
	case h.Less(o):
		return -1
	case o.Less(h):
		return 1
	}
	return 0
}

// IsZero reports whether h is the zero timestamp.
func (h HLC) IsZero() bool { return h == HLC{} }

func (h HLC) String() string { return fmt.Sprintf("%d.%d", h.Wall, h.Logical) }

// Clock issues HLC timestamps. It is pure: the physical time is an
// argument, never read from the system, so a simulator can drive it with
// skewed or drifting clocks.
type Clock struct {
	last HLC
}

// Last returns the latest timestamp issued or observed.
func (c *Clock) Last() HLC { return c.last }

// Now returns a timestamp for a local or send event at physical time phys:
// greater than every timestamp issued or observed before.
func (c *Clock) Now(phys time.Time) HLC {
	pt := phys.UnixNano()
	if pt > c.last.Wall {
		c.last = HLC{Wall: pt}
	} else {
		c.last.Logical++
	}
	return c.last
}

// Update merges a timestamp received from another node at physical time
// phys and returns the timestamp of the receive event: greater than both
// the clock's previous value and remote.
func (c *Clock) Update(phys time.Time, remote HLC) HLC {
	pt := phys.UnixNano()
	switch {
	case pt > c.last.Wall && pt > remote.Wall:
		c.last = HLC{Wall: pt}
	case remote.Wall > c.last.Wall:
		c.last = HLC{Wall: remote.Wall, Logical: remote.Logical + 1}
	case c.last.Wall > remote.Wall:
		c.last.Logical++
	default: // equal walls
		c.last.Logical = max(c.last.Logical, remote.Logical) + 1
	}
	return c.last
}
