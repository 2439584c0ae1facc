package nodes

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

func TestHotKeys(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, tc := range []struct {
		name  string
		every uint64
	}{{"every request", 1}, {"sampled 1/4", 4}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHotKeys(8, tc.every, time.Minute)
			// Key "hot" is 1 request in 3; 300 cold keys share the rest.
			for i := 0; i < 9000; i++ {
				if i%3 == 0 {
					h.observe("kv", []byte("hot"), now)
				} else {
					h.observe("kv", []byte(fmt.Sprintf("cold%d", i%300)), now)
				}
			}
			top := h.top(3, now)
			if len(top) == 0 || top[0].Key != "hot" || top[0].Namespace != "kv" {
				t.Fatalf("top = %+v, want hot first", top)
			}
			// Space-Saving: count - error never exceeds the true count
			// (known exactly when every request is counted).
			if lo, truth := top[0].Count-top[0].Error, 3000.0; tc.every == 1 && lo > truth {
				t.Errorf("lower bound %v above the true sampled count %v", lo, truth)
			}
		})
	}
	h := newHotKeys(4, 1, time.Second)
	for i := 0; i < 100; i++ {
		h.observe("ns", []byte("a"), now)
	}
	if got := h.top(1, now.Add(2*time.Second))[0].Count; got != 25 {
		t.Errorf("after two half-lives count = %v, want 25", got)
	}
	var nilH *hotKeys
	nilH.observe("ns", []byte("x"), now) // a node without tracking: no-op
}

// TestHotKeysCommand: HOTKEYS on a node names the key most calls asked for.
func TestHotKeysCommand(t *testing.T) {
	n, err := Start(Config{ID: "n1", Listen: "127.0.0.1:0", Engine: "memory"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(t.Context())
	c, err := transport.Dial(t.Context(), n.Addr(), transport.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	call := func(name string, args ...string) *gen.ExecuteResponse {
		t.Helper()
		r, err := c.Call(t.Context(), &gen.RequestOptions{}, cmd(name, args...))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := 0; i < 640; i++ {
		if i%2 == 0 {
			call("GET", "popular")
		} else {
			call("GET", fmt.Sprintf("k%d", i))
		}
	}
	r := call("HOTKEYS", "3")
	if len(r.Replies) == 0 || len(r.Replies[0].Array) == 0 {
		t.Fatalf("HOTKEYS: %+v", r)
	}
	if first := string(r.Replies[0].Array[0].Str); !strings.HasPrefix(first, `default "popular" ~`) {
		t.Fatalf("HOTKEYS first line %q, want the popular key", first)
	}
	if _, err := c.Call(t.Context(), &gen.RequestOptions{}, cmd("HOTKEYS", "x")); err != nil {
		t.Fatalf("bad N: transport error %v", err)
	}
}
