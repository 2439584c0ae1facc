package bench

import (
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

func TestOpenSlot(t *testing.T) {
	for _, tc := range []struct {
		rate              float64
		clients, batch, i int
		offset, interval  time.Duration
	}{
		{rate: 1000, clients: 4, batch: 1, i: 0, offset: 0, interval: 4 * time.Millisecond},
		{rate: 1000, clients: 4, batch: 1, i: 1, offset: time.Millisecond, interval: 4 * time.Millisecond},
		{rate: 1000, clients: 4, batch: 1, i: 3, offset: 3 * time.Millisecond, interval: 4 * time.Millisecond},
		{rate: 1000, clients: 4, batch: 10, i: 2, offset: 20 * time.Millisecond, interval: 40 * time.Millisecond},
		{rate: 3, clients: 1, batch: 1, i: 0, offset: 0, interval: 333333333},
		{rate: 24000, clients: 50, batch: 1, i: 49, offset: 2041666, interval: 2083333},
	} {
		offset, interval := openSlot(Config{Rate: tc.rate, Clients: tc.clients, Batch: tc.batch}, tc.i)
		if offset != tc.offset || interval != tc.interval {
			t.Errorf("openSlot(rate %v, %d clients, batch %d, conn %d) = %v, %v; want %v, %v",
				tc.rate, tc.clients, tc.batch, tc.i, offset, interval, tc.offset, tc.interval)
		}
	}
}

func TestMissedOps(t *testing.T) {
	end := time.Unix(100, 0)
	for _, tc := range []struct {
		before   time.Duration // next = end - before
		interval time.Duration
		batch    int
		want     int64
	}{
		{before: 0, interval: 4 * time.Millisecond, batch: 1, want: 0},                 // next at end: not due before it
		{before: -time.Millisecond, interval: 4 * time.Millisecond, batch: 1, want: 0}, // past the end
		{before: time.Nanosecond, interval: 4 * time.Millisecond, batch: 1, want: 1},
		{before: 4 * time.Millisecond, interval: 4 * time.Millisecond, batch: 1, want: 1},      // slot at end-4ms only
		{before: 4*time.Millisecond + 1, interval: 4 * time.Millisecond, batch: 1, want: 2},    // and one at end-1ns
		{before: 10 * time.Millisecond, interval: 4 * time.Millisecond, batch: 1, want: 3},     // -10, -6, -2 ms
		{before: 10 * time.Millisecond, interval: 4 * time.Millisecond, batch: 100, want: 300}, // counted in operations
	} {
		if got := missedOps(end.Add(-tc.before), end, tc.interval, tc.batch); got != tc.want {
			t.Errorf("missedOps(end-%v, interval %v, batch %d) = %d, want %d", tc.before, tc.interval, tc.batch, got, tc.want)
		}
	}
}

func TestCountFailed(t *testing.T) {
	ok := &gen.Reply{Kind: gen.ReplyKind_STATUS}
	bad := &gen.Reply{Kind: gen.ReplyKind_ERROR}
	for _, tc := range []struct {
		name    string
		replies []*gen.Reply
		n       int
		want    int
		wantErr bool
	}{
		{name: "one ok", replies: []*gen.Reply{ok}, n: 1, want: 0},
		{name: "one error", replies: []*gen.Reply{bad}, n: 1, want: 1},
		{name: "batch", replies: []*gen.Reply{ok, bad, ok, bad, bad}, n: 5, want: 3},
		{name: "too few", replies: []*gen.Reply{ok}, n: 2, wantErr: true},
		{name: "too many", replies: []*gen.Reply{ok, ok}, n: 1, wantErr: true},
	} {
		got, err := countFailed(&gen.ExecuteResponse{Replies: tc.replies}, tc.n)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: countFailed = %d, %v; want %d, error %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestWireCmds(t *testing.T) {
	var w wireCmds
	cmd := func(name string, args ...string) core.Command {
		c := core.Command{Name: name}
		for _, a := range args {
			c.Args = append(c.Args, []byte(a))
		}
		return c
	}
	check := func(what string, got []*gen.Command, want []core.Command) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d wire commands, want %d", what, len(got), len(want))
		}
		for i := range want {
			if got[i].Name != want[i].Name || len(got[i].Argv) != len(want[i].Args) {
				t.Fatalf("%s: command %d is %s/%d args, want %s/%d", what, i, got[i].Name, len(got[i].Argv), want[i].Name, len(want[i].Args))
			}
			for k := range want[i].Args {
				if string(got[i].Argv[k]) != string(want[i].Args[k]) {
					t.Fatalf("%s: command %d arg %d is %q, want %q", what, i, k, got[i].Argv[k], want[i].Args[k])
				}
			}
		}
	}
	one := cmd("GET", "k")
	check("single", []*gen.Command{w.single(one)}, []core.Command{one})
	three := []core.Command{cmd("SET", "a", "1"), cmd("GET", "b"), cmd("SET", "c", "3")}
	first := w.batch(three)
	check("batch of 3", first, three)
	two := []core.Command{cmd("GET", "x"), cmd("GET", "y")}
	second := w.batch(two)
	check("batch of 2", second, two)
	if second[0] != first[0] {
		t.Errorf("a smaller batch did not reuse the wire commands")
	}
	if allocs := testing.AllocsPerRun(100, func() { w.batch(three); w.single(one) }); allocs != 0 {
		t.Errorf("%.1f allocations per reused request, want 0", allocs)
	}
}
