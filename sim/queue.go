package sim

import "github.com/dialkv/dialkv/consistency"

// evKind says what an event does. The frequent events (ticks, message
// deliveries, requests, replies, timeouts, a client's next operation) are
// typed, so scheduling one allocates nothing; rare ones run a closure. An
// event holds no pointers (closures, calls, messages and responses live in
// the runner's slabs, named by index), so the heap is never scanned by the
// garbage collector and moving events needs no write barriers.
type evKind uint8

const (
	evFn      evKind = iota // run the closure in slot
	evTick                  // tick node a
	evDeliver               // node a receives the message in slot
	evArrive                // call c arrives at node a
	evReply                 // call c gets the response in slot from node a
	evTimeout               // call c times out
	evNext                  // client a starts its next operation
)

// event is one scheduled action. Events run in (at, seq) order: seq breaks
// ties in scheduling order, so the run is a pure function of the seed.
type event struct {
	at   int64
	seq  uint64
	a    int32 // node or client index
	slot int32 // index into the runner's closure, message or response slab
	c    int32 // the call (runner.calls)
	kind evKind
}

// queue is a binary min-heap of events plus a FIFO for events scheduled in
// time order (the clients' timeouts, all the same duration from now): a
// FIFO of such events is already sorted, and keeping the many timeouts in
// flight out of the heap keeps the heap small. next takes the earlier of
// the two heads, so the order is exactly that of one heap.
type queue struct {
	h    []event
	fifo []event
	head int // fifo[head:] are pending
}

func before(a, b *event) bool { return a.at < b.at || (a.at == b.at && a.seq < b.seq) }

// pushLate queues e, which is usually no earlier than every event pushLate
// queued before it (else it goes to the heap).
func (q *queue) pushLate(e event) {
	if q.head < len(q.fifo) && e.at < q.fifo[len(q.fifo)-1].at {
		q.push(e)
		return
	}
	if q.head == len(q.fifo) {
		q.fifo, q.head = q.fifo[:0], 0
	} else if q.head >= 1024 && q.head*2 >= len(q.fifo) {
		n := copy(q.fifo, q.fifo[q.head:])
		clear(q.fifo[n:])
		q.fifo, q.head = q.fifo[:n], 0
	}
	q.fifo = append(q.fifo, e)
}

// next removes and returns the earliest event; false when none is left.
func (q *queue) next() (event, bool) {
	if q.head < len(q.fifo) && (len(q.h) == 0 || before(&q.fifo[q.head], &q.h[0])) {
		e := q.fifo[q.head]
		q.fifo[q.head] = event{}
		q.head++
		return e, true
	}
	if len(q.h) == 0 {
		return event{}, false
	}
	return q.pop(), true
}

func (q *queue) less(i, j int) bool { return before(&q.h[i], &q.h[j]) }

// The heap is 4-ary (children of i: 4i+1 ... 4i+4): half the levels of a
// binary heap, and a pop's comparisons of siblings are adjacent in memory.
// Any heap yields the same order, (at, seq) being a total order.
func (q *queue) push(e event) {
	q.h = append(q.h, e)
	h := q.h
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 4
		if !before(&e, &h[p]) {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = e
}

func (q *queue) pop() event {
	h := q.h
	top := h[0]
	last := len(h) - 1
	e := h[last]
	h[last] = event{}
	h = h[:last]
	q.h = h
	if last == 0 {
		return top
	}
	i := 0
	for {
		c := 4*i + 1
		if c >= last {
			break
		}
		m := c
		for k := c + 1; k < c+4 && k < last; k++ {
			if before(&h[k], &h[m]) {
				m = k
			}
		}
		if !before(&h[m], &e) {
			break
		}
		h[i] = h[m]
		i = m
	}
	h[i] = e
	return top
}

func (q *queue) len() int { return len(q.h) + len(q.fifo) - q.head }

// slab holds values of events in flight (messages, responses) in reused
// slots, so that scheduling a delivery allocates nothing.
type slab[T any] struct {
	v    []T
	free []int32
}

func (s *slab[T]) put(x T) int32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		s.v[i] = x
		return i
	}
	s.v = append(s.v, x)
	return int32(len(s.v) - 1)
}

// take returns slot i's value and frees the slot.
func (s *slab[T]) take(i int32) T {
	x := s.v[i]
	var zero T
	s.v[i] = zero
	s.free = append(s.free, i)
	return x
}

type (
	msgSlab  = slab[consistency.Message]
	respSlab = slab[consistency.Response]
	fnSlab   = slab[func()]
)
