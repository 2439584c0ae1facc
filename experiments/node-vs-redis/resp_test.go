package main

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/core"
)

// fakeRedis answers each RESP command read from the connection with the
// next canned reply, and records what it read.
func fakeRedis(t *testing.T, replies []string) (addr string, got chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	got = make(chan string, len(replies))
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for _, reply := range replies {
			var cmd strings.Builder
			line, err := r.ReadString('\n') // *N
			if err != nil {
				return
			}
			var n int
			for _, ch := range line[1 : len(line)-2] {
				n = n*10 + int(ch-'0')
			}
			for i := 0; i < 2*n; i++ { // $len and the bytes, per argument
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if i%2 == 1 {
					cmd.WriteString(strings.TrimSuffix(l, "\r\n") + " ")
				}
			}
			got <- strings.TrimSpace(cmd.String())
			c.Write([]byte(reply))
		}
	}()
	return ln.Addr().String(), got
}

func TestRespConn(t *testing.T) {
	replies := []string{"+OK\r\n", "$5\r\nhello\r\n", "$-1\r\n", "-ERR wrong\r\n", ":3\r\n"}
	addr, got := fakeRedis(t, replies)
	c, err := respConnector(addr, 2*time.Second)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	set := core.Command{Name: "SET", Args: [][]byte{[]byte("k"), []byte("v")}}
	get := core.Command{Name: "GET", Args: [][]byte{[]byte("k")}}
	cases := []struct {
		cmds       []core.Command
		wantFailed int
		wantSent   []string
	}{
		{[]core.Command{set}, 0, []string{"SET k v"}},
		{[]core.Command{get, get}, 0, []string{"GET k", "GET k"}},   // a pipeline: a value, then nil
		{[]core.Command{set, get}, 1, []string{"SET k v", "GET k"}}, // an error reply, then an integer
	}
	for i, tc := range cases {
		failed, err := c.Do(context.Background(), tc.cmds)
		if err != nil || failed != tc.wantFailed {
			t.Fatalf("case %d: failed %d, err %v; want %d, nil", i, failed, err, tc.wantFailed)
		}
		for _, w := range tc.wantSent {
			if g := <-got; g != w {
				t.Fatalf("case %d: server read %q, want %q", i, g, w)
			}
		}
	}
	// The server has no replies left and closes the connection: an error.
	if _, err := c.Do(context.Background(), []core.Command{get}); err == nil {
		t.Fatal("a request with no reply succeeded")
	}
}
