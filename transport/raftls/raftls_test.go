package raftls

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/dialkv/dialkv/nodes/security"
)

// dbFrame is a frame in Dragonboat's TCP format (as an older build sends
// it: internal/transport/tcp.go writeMessage) with method around payload.
func dbFrame(method uint16, payload []byte) []byte {
	h := make([]byte, dbHeaderSize)
	putDragonboatHeader(h, method, payload)
	return append(h, payload...)
}

// readOne reads one frame from in.
func readOne(in []byte, dragonboat bool, maxFrame int) (byte, []byte, bool, error) {
	fr := frameReader{r: bufio.NewReader(bytes.NewReader(in)), maxFrame: maxFrame, dragonboat: dragonboat}
	return fr.next()
}

func TestFrames(t *testing.T) {
	good := appendFrame(nil, kindBatch, []byte("payload"))
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 0xff
		return b
	}
	db := dbFrame(dbMethodChunk, []byte("chunk"))
	// withHeader re-encodes db's header checksum after change altered it.
	withHeader := func(change func(h []byte)) []byte {
		b := bytes.Clone(db)
		h := b[2:dbHeaderSize]
		change(h)
		binary.BigEndian.PutUint32(h[10:14], 0)
		binary.BigEndian.PutUint32(h[10:14], crc32.ChecksumIEEE(h))
		return b
	}
	tests := []struct {
		name       string
		in         []byte
		dragonboat bool // plain mode: Dragonboat's format read too
		want       error
		wantKind   byte // when want is nil
		wantOlder  bool
	}{
		{"good", good, false, nil, kindBatch, false},
		{"good, plain mode", good, true, nil, kindBatch, false},
		{"empty close frame", appendFrame(nil, kindClose, nil), false, nil, kindClose, false},
		{"hello", appendFrame(nil, kindHello, nil), true, nil, kindHello, false},
		{"bad magic", flip(good, 0), false, ErrBadFrame, 0, false},
		{"bad kind", flip(good, 2), false, ErrBadFrame, 0, false},
		{"refused is no frame kind", appendFrame(nil, kindRefused, nil), true, ErrBadFrame, 0, false},
		{"poison kind is no frame kind", appendFrame(nil, kindPoison, nil), true, ErrBadFrame, 0, false},
		{"too long", flip(good, 3), false, ErrBadFrame, 0, false},
		{"bad checksum", flip(good, 8), false, ErrBadFrame, 0, false},
		{"payload changed", flip(good, len(good)-1), false, ErrBadFrame, 0, false},
		{"short payload", good[:len(good)-2], false, ErrBadFrame, 0, false},
		{"short header", good[:5], false, io.ErrUnexpectedEOF, 0, false},
		{"dragonboat chunk", db, true, nil, kindChunk, true},
		{"dragonboat batch", dbFrame(dbMethodBatch, []byte("b")), true, nil, kindBatch, true},
		{"dragonboat frame in TLS mode", db, false, ErrBadFrame, 0, false},
		{"dragonboat poison", []byte{0, 0}, true, nil, kindPoison, true},
		{"dragonboat header changed", flip(db, 5), true, ErrBadFrame, 0, false},
		{"dragonboat header checksum changed", flip(db, 13), true, ErrBadFrame, 0, false},
		{"dragonboat payload changed", flip(db, len(db)-1), true, ErrBadFrame, 0, false},
		{"dragonboat payload checksum changed", flip(db, 17), true, ErrBadFrame, 0, false},
		{"dragonboat bad method", withHeader(func(h []byte) { binary.BigEndian.PutUint16(h, 300) }), true, ErrBadFrame, 0, false},
		{"dragonboat empty payload", dbFrame(dbMethodBatch, nil), true, ErrBadFrame, 0, false},
		{"dragonboat too long", withHeader(func(h []byte) { binary.BigEndian.PutUint64(h[2:], 1<<40) }), true, ErrBadFrame, 0, false},
		{"dragonboat short payload", db[:len(db)-1], true, ErrBadFrame, 0, false},
		{"dragonboat short header", db[:10], true, io.ErrUnexpectedEOF, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kind, _, older, err := readOne(tc.in, tc.dragonboat, 1<<20)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("next: %v, want %v", err, tc.want)
			}
			if tc.want == nil && (kind != tc.wantKind || older != tc.wantOlder) {
				t.Fatalf("kind %d older %v, want %d %v", kind, older, tc.wantKind, tc.wantOlder)
			}
		})
	}
}

// FuzzReadFrame: arbitrary bytes never panic, and a frame that is read
// back re-encodes to the bytes it was read from, in either format.
func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, kindBatch, []byte("x")))
	f.Add(appendFrame(nil, kindChunk, nil))
	f.Add([]byte("DR\x01\xff\xff\xff\xff"))
	f.Add(dbFrame(dbMethodBatch, []byte("x")))
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		kind, payload, older, err := readOne(in, true, 1<<16)
		if err != nil {
			return
		}
		var out []byte
		switch {
		case kind == kindPoison:
			out = []byte{0, 0}
		case older && kind == kindBatch:
			out = dbFrame(dbMethodBatch, payload)
		case older:
			out = dbFrame(dbMethodChunk, payload)
		default:
			out = appendFrame(nil, kind, payload)
		}
		if !bytes.Equal(out, in[:len(out)]) {
			t.Fatalf("frame %x re-encodes as %x", in[:len(out)], out)
		}
	})
}

// TestTransport sends a message batch and snapshot chunks between two
// transports with node certificates, and shows that a transport whose
// identity check refuses the other side delivers nothing.
func TestTransport(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", dir, "--nodes", "n1,n2"}, &out, &errb); code != 0 {
		t.Fatalf("certs: %s", errb.String())
	}
	files := func(n string) security.TLSFiles {
		return security.TLSFiles{Cert: filepath.Join(dir, "node-"+n+".crt"), Key: filepath.Join(dir, "node-"+n+".key"), CA: filepath.Join(dir, "ca.crt")}
	}
	members := func(names ...string) func(string) bool {
		return func(s string) bool {
			for _, n := range names {
				if s == n {
					return true
				}
			}
			return false
		}
	}
	var mu sync.Mutex
	var batches []pb.MessageBatch
	var chunks []pb.Chunk
	start := func(node string, isNode func(string) bool) *Transport {
		srv, cli, err := security.RaftConfigs(files(node), isNode, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr := Factory{Server: srv, Client: cli}.Create(config.NodeHostConfig{RaftAddress: "127.0.0.1:0"},
			func(b pb.MessageBatch) { mu.Lock(); batches = append(batches, b); mu.Unlock() },
			func(c pb.Chunk) bool { mu.Lock(); chunks = append(chunks, c); mu.Unlock(); return true }).(*Transport)
		if err := tr.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	addr := func(tr *Transport) string { return tr.ln.Addr().String() }
	n1 := start("n1", members("n1", "n2"))
	n2 := start("n2", members("n1", "n2"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := n1.GetConnection(ctx, addr(n2))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMessageBatch(pb.MessageBatch{DeploymentId: 7, Requests: []pb.Message{{Type: pb.Heartbeat, To: 2, From: 1, ShardID: 3}}}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	sendThreeChunks(t, ctx, n1, addr(n2)) // Close waits: every chunk was handed on
	mu.Lock()
	if len(chunks) != 3 || chunks[2].ChunkId != 2 || len(chunks[2].Data) != 1<<20 || chunks[2].Data[0] != 2 {
		t.Fatalf("chunks after Close: %d", len(chunks))
	}
	mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(batches)
		mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("message batch not delivered")
		}
	}
	if b := batches[0]; b.DeploymentId != 7 || len(b.Requests) != 1 || b.Requests[0].Type != pb.Heartbeat {
		t.Fatalf("batch: %+v", b)
	}

	// loner holds n2's certificate but counts only itself as a member: it
	// refuses n1's connection (nothing n1 sends is delivered), and it
	// refuses to dial n1 (n1's server certificate names no member).
	loner := start("n2", members("n2"))
	if c, err := n1.GetConnection(ctx, addr(loner)); err == nil {
		// TLS 1.3: the client's handshake may finish before the server's
		// verdict; the batch must still not be delivered.
		c.SendMessageBatch(pb.MessageBatch{DeploymentId: 8})
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	for _, b := range batches {
		if b.DeploymentId == 8 {
			t.Fatal("a refused peer delivered a batch")
		}
	}
	mu.Unlock()
	if _, err := loner.GetConnection(ctx, addr(n1)); err == nil {
		t.Fatal("dialling a non-member succeeded")
	}
}

// TestRefusedStreamStaysOpen: a receiver that refuses the first chunk of a
// five-chunk stream keeps the connection; every SendChunk succeeds (an
// error trips Dragonboat's circuit breaker for the peer), the receiver is
// handed no chunk after the refused one, and Close is acknowledged.
//
// Reproduce: go test -count=1 -run TestRefusedStreamStaysOpen ./transport/raftls/
func TestRefusedStreamStaysOpen(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := security.CertsMain([]string{"--out", dir, "--nodes", "n1,n2"}, &out, &errb); code != 0 {
		t.Fatalf("certs: %s", errb.String())
	}
	isNode := func(s string) bool { return s == "n1" || s == "n2" }
	var mu sync.Mutex
	handed := 0
	start := func(node string) *Transport {
		srv, cli, err := security.RaftConfigs(security.TLSFiles{Cert: filepath.Join(dir, "node-"+node+".crt"),
			Key: filepath.Join(dir, "node-"+node+".key"), CA: filepath.Join(dir, "ca.crt")}, isNode, nil)
		if err != nil {
			t.Fatal(err)
		}
		tr := Factory{Server: srv, Client: cli}.Create(config.NodeHostConfig{RaftAddress: "127.0.0.1:0"},
			func(pb.MessageBatch) {},
			func(pb.Chunk) bool { mu.Lock(); handed++; mu.Unlock(); return false }).(*Transport)
		if err := tr.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	n1, n2 := start("n1"), start("n2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, err := n1.GetSnapshotConnection(ctx, n2.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := sc.SendChunk(pb.Chunk{ShardID: 3, ChunkId: uint64(i), ChunkCount: 5, Data: make([]byte, 2<<20)}); err != nil {
			t.Fatalf("chunk %d after a refusal: %v", i, err)
		}
	}
	began := time.Now()
	sc.Close()
	if d := time.Since(began); d > writeTimeout/2 {
		t.Errorf("Close took %v: not acknowledged", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if handed != 1 {
		t.Fatalf("%d chunks handed to Dragonboat, want 1 (the refused one)", handed)
	}
}

// sendThreeChunks streams three 1 MiB chunks (chunk i filled with byte i)
// of shard 3 from tr to target and closes the stream, which waits for the
// receiver's acknowledgement.
func sendThreeChunks(t *testing.T, ctx context.Context, tr raftio.ITransport, target string) {
	t.Helper()
	sc, err := tr.GetSnapshotConnection(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := sc.SendChunk(pb.Chunk{ShardID: 3, ChunkId: uint64(i), Data: bytes.Repeat([]byte{byte(i)}, 1<<20)}); err != nil {
			t.Fatal(err)
		}
	}
	sc.Close()
}
