package security

import (
	"context"
	"testing"
	"time"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// BenchmarkVerifyPasswordDefault is the cost of one password check with
// DefaultHashParams (why passwords are checked per connection).
func BenchmarkVerifyPasswordDefault(b *testing.B) {
	h, err := HashPassword("pw", DefaultHashParams)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _ := VerifyPassword(h, "pw"); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkTokenBucketAllow(b *testing.B) {
	tb, _ := NewTokenBucket(1e9, 1000)
	now := time.Unix(0, 0)
	for b.Loop() {
		now = now.Add(time.Microsecond)
		tb.Allow(now)
	}
}

// BenchmarkGuardCall is the Guard's overhead per allowed Call (policy with
// five grants).
func BenchmarkGuardCall(b *testing.B) {
	pol, _ := testPolicy(b)
	g := &Guard{Inner: &fakeKV{}, Auth: pol}
	ctx := WithPrincipal(context.Background(), Principal{Name: "alice", Method: "cert"})
	c := &gen.Command{Name: "SET", Argv: [][]byte{[]byte("k"), []byte("v")}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.Call(ctx, nil, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCommandNeed is the classification of one command the Guard
// does per call: a data command (the hot path) and a management one.
func BenchmarkCommandNeed(b *testing.B) {
	for _, c := range []*gen.Command{
		{Name: "SET", Argv: [][]byte{[]byte("k"), []byte("v")}},
		{Name: "GET", Argv: [][]byte{[]byte("k")}},
		{Name: "RAFT.ADD", Argv: [][]byte{[]byte("0"), []byte("n2")}},
	} {
		b.Run(c.Name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if commandNeed(c).Action == 0 {
					b.Fatal("no action")
				}
			}
		})
	}
}
