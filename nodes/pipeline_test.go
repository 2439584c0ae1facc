package nodes

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// TestPipelinedFrames sends requests over raw sockets in the ways a read
// can cut them: many frames in one write (more than the epoll mode's 4 KB
// read buffer, so a full read is followed by another without a new
// event), one frame split over writes with pauses, and a frame larger than
// the read buffer. Every request must be answered, in order; a lost wakeup
// in the edge-triggered epoll mode shows as a reply that never comes.
func TestPipelinedFrames(t *testing.T) {
	for _, mode := range []transport.ConnMode{transport.ModeEpoll, transport.ModeGoroutine} {
		t.Run(string(mode), func(t *testing.T) {
			n := startNode(t, Config{IdleTimeout: time.Minute, ConnMode: mode})
			set := func(k, v string) []byte {
				return message(t, "call", 1, &gen.DialKVCallArgs{Opts: noOpts(), Cmd: cmd("SET", k, v)})
			}
			expectOK := func(what string, replies int, read func() (thrift.TMessageType, error)) {
				t.Helper()
				for i := 0; i < replies; i++ {
					if typ, err := read(); err != nil || typ != thrift.REPLY {
						t.Fatalf("%s: reply %d of %d: %v %v", what, i+1, replies, typ, err)
					}
				}
			}
			cases := []struct {
				name   string
				writes [][]byte
				pause  time.Duration
				reqs   int
			}{
				{"200 frames in one write", [][]byte{bytes.Repeat(set("p", strings.Repeat("v", 100)), 200)}, 0, 200},
				{"one frame split in three writes", splitIn(set("s", "v"), 3), 20 * time.Millisecond, 1},
				{"a 100 KB frame", splitIn(set("big", strings.Repeat("x", 100<<10)), 7), time.Millisecond, 1},
				{"frames cut mid-header", splitAt(bytes.Repeat(set("h", "v"), 3), 2, 40), 10 * time.Millisecond, 3},
			}
			for _, tc := range cases {
				c := rawConn(t, n.Addr())
				for i, w := range tc.writes {
					if i > 0 {
						time.Sleep(tc.pause)
					}
					if _, err := c.Write(w); err != nil {
						t.Fatal(err)
					}
				}
				expectOK(tc.name, tc.reqs, func() (thrift.TMessageType, error) { return readReply(t, c) })
			}
			// Many connections, each sending its next request as soon as
			// the last is answered: the pattern that races a new request's
			// event against the release of the connection.
			var wg sync.WaitGroup
			errs := make(chan error, 20)
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := rawConn(t, n.Addr())
					for j := 0; j < 200; j++ {
						if _, err := c.Write(set(fmt.Sprintf("c%d", i), "v")); err != nil {
							errs <- err
							return
						}
						if typ, err := readReply(t, c); err != nil || typ != thrift.REPLY {
							errs <- fmt.Errorf("connection %d request %d: %v %v", i, j, typ, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}

// splitIn cuts b into k nearly equal pieces.
func splitIn(b []byte, k int) [][]byte {
	var out [][]byte
	for i := 0; i < k; i++ {
		out = append(out, b[i*len(b)/k:(i+1)*len(b)/k])
	}
	return out
}

// splitAt cuts b at the given offsets.
func splitAt(b []byte, at ...int) [][]byte {
	var out [][]byte
	prev := 0
	for _, a := range at {
		out = append(out, b[prev:a])
		prev = a
	}
	return append(out, b[prev:])
}
