package nodes

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/core"
)

// TestClockOffset: --clock-offset (Config.ClockOffset) and the admin API's
// /v1/clock set the clock the node's data reads: a key with a 60 s TTL
// expires once the offset moves the clock 2 minutes ahead; a bad offset is
// refused and changes nothing.
func TestClockOffset(t *testing.T) {
	n, err := Start(Config{ID: "n1", Listen: "127.0.0.1:0", DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", ClockOffset: -time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	state := func(method, q string) (ClockState, int) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+n.AdminAddr()+"/v1/clock"+q, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s ClockState
		json.NewDecoder(resp.Body).Decode(&s)
		return s, resp.StatusCode
	}
	if s, code := state("GET", ""); code != 200 || s.Offset != "-1h0m0s" {
		t.Fatalf("GET /v1/clock = %d %+v, want the -1h of Config.ClockOffset", code, s)
	}
	if got := time.Until(n.Clock().Now()); got > -59*time.Minute || got < -61*time.Minute {
		t.Fatalf("node clock is %v from time.Now, want -1h", got)
	}
	if _, code := state("POST", "?offset=0s"); code != 200 {
		t.Fatalf("POST offset=0s: %d", code)
	}
	ns := n.namespace(DefaultNamespace)
	do := func(args ...string) core.Reply {
		t.Helper()
		cmd := core.Cmd(args[0], args[1:]...)
		r, err := ns.local.Do(context.Background(), consistency.Request{Cmd: &cmd})
		if err != nil {
			t.Fatal(err)
		}
		return r.Reply
	}
	do("SET", "k", "v", "EX", "60")
	if r := do("GET", "k"); string(r.Str) != "v" {
		t.Fatalf("GET k = %+v", r)
	}
	if _, code := state("POST", "?offset=nonsense"); code != http.StatusBadRequest {
		t.Errorf("POST offset=nonsense: %d, want 400", code)
	}
	if s, code := state("POST", "?offset=2m"); code != 200 || s.Offset != "2m0s" {
		t.Fatalf("POST offset=2m = %d %+v", code, s)
	}
	if r := do("GET", "k"); r.Kind != core.KindNil {
		t.Errorf("GET k with the clock 2 minutes ahead = %+v, want expired (nil)", r)
	}
}
