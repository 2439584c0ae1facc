package transport

import (
	"bytes"
	"context"
	"log/slog"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"
	peer "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkvpeer"
)

func encodeDeliver(cluster string, msgs []*peer.PeerMessage) []byte {
	buf := thrift.NewTMemoryBuffer()
	p := thrift.NewTBinaryProtocolConf(buf, &thrift.TConfiguration{})
	ctx := context.Background()
	p.WriteMessageBegin(ctx, "deliver", thrift.CALL, 1)
	(&peer.PeerDeliverArgs{Cluster: cluster, Msgs: msgs}).Write(ctx, p)
	p.WriteMessageEnd(ctx)
	p.Flush(ctx)
	return buf.Bytes()
}

// FuzzPeerDeliver feeds arbitrary bytes to the peer API's decoding path (a
// node's peer listener, unframed request body). It must never panic, and
// only messages whose CRC-32C holds, of this node's cluster, reach the
// replicas. Longer runs:
//
//	go test ./transport -run '^$' -fuzz FuzzPeerDeliver -fuzztime 60s
func FuzzPeerDeliver(f *testing.F) {
	good := toWire(PeerMessage{Namespace: "kv", From: "n2", To: "n1", Body: []byte("body")})
	bad := toWire(PeerMessage{Namespace: "kv", From: "n2", To: "n1", Body: []byte("body")})
	bad.Crc32c ^= 1
	f.Add(encodeDeliver("c", []*peer.PeerMessage{good, bad}))
	f.Add(encodeDeliver("other", []*peer.PeerMessage{good}))
	f.Add(encodeDeliver("c", nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		var got []PeerMessage
		s := &PeerServer{cluster: "c", log: slog.New(slog.DiscardHandler), handle: func(m PeerMessage) { got = append(got, m) }}
		proc := peer.NewPeerProcessor(&peerHandler{s})
		cfg := &thrift.TConfiguration{MaxMessageSize: 1 << 16}
		inBuf := &thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(in)}
		out := thrift.NewTMemoryBuffer()
		proc.Process(context.Background(), thrift.NewTBinaryProtocolConf(inBuf, cfg), thrift.NewTBinaryProtocolConf(out, cfg))
		if int64(len(got)) != s.n.delivered.Load() {
			t.Fatalf("%d handed over, %d counted", len(got), s.n.delivered.Load())
		}
		if len(got) > 0 {
			// Decode the request ourselves: every delivered body must be
			// one whose checksum holds.
			p := thrift.NewTBinaryProtocolConf(&thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(in)}, cfg)
			ctx := context.Background()
			p.ReadMessageBegin(ctx)
			var args peer.PeerDeliverArgs
			if err := args.Read(ctx, p); err != nil || args.Cluster != "c" {
				t.Fatalf("delivered %d messages of a request that does not decode (%v) or names cluster %q", len(got), err, args.Cluster)
			}
			ok := 0
			for _, m := range args.Msgs {
				if m != nil && bodyCRC(m.Body) == m.Crc32c {
					ok++
				}
			}
			if ok != len(got) {
				t.Fatalf("delivered %d messages, %d had a valid checksum", len(got), ok)
			}
		}
	})
}
