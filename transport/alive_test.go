package transport

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestConnAlive: an idle connection is alive while the other side keeps it
// open and quiet, and not once that side closed it or sent bytes nobody
// asked for (before the peek, Alive read with a deadline already past,
// which Go's poller answers without reading: every case was "alive").
func TestConnAlive(t *testing.T) {
	tests := []struct {
		name  string
		after func(net.Conn) // what the server does to its end
		want  bool
	}{
		{"open and quiet", func(net.Conn) {}, true},
		{"closed", func(c net.Conn) { c.Close() }, false},
		{"unsolicited bytes", func(c net.Conn) { c.Write([]byte{0, 0, 0, 1, 'x'}) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, ln.Addr().String(), DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc := <-accepted
			defer sc.Close()
			tc.after(sc)
			// The close or the bytes take a moment to arrive on loopback.
			got := c.Alive()
			for deadline := time.Now().Add(5 * time.Second); got != tc.want && time.Now().Before(deadline); got = c.Alive() {
				time.Sleep(5 * time.Millisecond)
			}
			if got != tc.want {
				t.Fatalf("Alive() = %v, want %v", got, tc.want)
			}
			if tc.want {
				time.Sleep(50 * time.Millisecond)
				if !c.Alive() {
					t.Fatal("a quiet open connection stopped looking alive")
				}
			}
		})
	}
}
