package bench

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// What the goroutine client (thriftConn, worker) and the event-loop client
// (--io loop) share: the wire form of a request's commands, the counting of
// a reply's failed commands, and the open loop's schedule.

// wireCmds holds the wire form of one connection's requests, reused from
// one request to the next (no allocation per request once a batch of the
// largest size has been sent).
type wireCmds struct {
	one  gen.Command
	cmds []gen.Command
	wire []*gen.Command
}

// single is c's wire form, for a `call`. It is valid until the next use of w.
func (w *wireCmds) single(c core.Command) *gen.Command {
	w.one = gen.Command{Name: c.Name, Argv: c.Args}
	return &w.one
}

// batch is cmds' wire form, for an `execute`. It is valid until the next
// use of w.
func (w *wireCmds) batch(cmds []core.Command) []*gen.Command {
	if cap(w.cmds) < len(cmds) {
		w.cmds = make([]gen.Command, len(cmds))
		w.wire = make([]*gen.Command, len(cmds))
		for i := range w.cmds {
			w.wire[i] = &w.cmds[i]
		}
	}
	for i, c := range cmds {
		w.cmds[i] = gen.Command{Name: c.Name, Argv: c.Args}
	}
	return w.wire[:len(cmds)]
}

// errReplyCount is wrapped by the error of a reply with another number
// of replies than its request had commands: the request's commands count
// as errors, the connection stays.
var errReplyCount = errors.New("bench: wrong number of replies")

// countFailed returns how many of the replies to a request of n commands
// are errors; a reply with another number of replies than n is an error
// (errReplyCount).
func countFailed(resp *gen.ExecuteResponse, n int) (int, error) {
	if len(resp.Replies) != n {
		return 0, fmt.Errorf("%w: %d replies to %d commands", errReplyCount, len(resp.Replies), n)
	}
	failed := 0
	for _, r := range resp.Replies {
		if r.Kind == gen.ReplyKind_ERROR {
			failed++
		}
	}
	return failed, nil
}

// openSlot is the open loop's schedule of connection i of cfg.Clients: the
// interval between its requests (each connection sends cfg.Rate /
// cfg.Clients operations a second, cfg.Batch per request) and the offset
// of its first slot from the start, the connections' schedules staggered
// over one interval.
func openSlot(cfg Config, i int) (offset, interval time.Duration) {
	perConn := cfg.Rate / float64(cfg.Clients)
	interval = time.Duration(float64(time.Second) * float64(cfg.Batch) / perConn)
	return time.Duration(int64(interval) * int64(i) / int64(cfg.Clients)), interval
}

// missedOps is how many operations of an open-loop connection were due
// before end but never sent: its slots from next (its first unsent one)
// on, every interval, cfg.Batch operations each.
func missedOps(next, end time.Time, interval time.Duration, batch int) int64 {
	if !next.Before(end) {
		return 0
	}
	return int64((end.Sub(next)+interval-1)/interval) * int64(batch)
}

// splitAddrs splits a comma-separated --addr into its addresses.
func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
