package raftls

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4/config"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// received collects what a transport handed on.
type received struct {
	mu      sync.Mutex
	batches []pb.MessageBatch
	chunks  []pb.Chunk
}

func (r *received) batch(b pb.MessageBatch) {
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.mu.Unlock()
}
func (r *received) chunk(c pb.Chunk) bool {
	r.mu.Lock()
	r.chunks = append(r.chunks, c)
	r.mu.Unlock()
	return true
}

// waitBatch waits until a batch of deployment id did arrived.
func (r *received) waitBatch(t *testing.T, did uint64) pb.MessageBatch {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		for _, b := range r.batches {
			if b.DeploymentId == did {
				r.mu.Unlock()
				return b
			}
		}
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no batch of deployment id %d arrived", did)
		}
	}
}

// startPlain starts a plain-mode transport on a free loopback port.
func startPlain(t *testing.T, r *received) *Transport {
	t.Helper()
	tr := Factory{}.Create(config.NodeHostConfig{RaftAddress: "127.0.0.1:0"}, r.batch, r.chunk).(*Transport)
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestPlainTransport: a message batch and snapshot chunks between two
// plain-mode transports, in this build's format (the hello was answered).
func TestPlainTransport(t *testing.T) {
	var r received
	n1, n2 := startPlain(t, &received{}), startPlain(t, &r)
	if n1.Name() != PlainName {
		t.Fatalf("name %q", n1.Name())
	}
	ctx := testCtx(t)
	c, err := n1.GetConnection(ctx, n2.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.(*conn).older {
		t.Fatal("a peer of this build taken for an older one")
	}
	// Sizes shrink (400, 200, 100 bytes of entry), so the receiver reads
	// the second and third batch into the first one's buffer: the first
	// batch's entry checked after them shows that what was handed on does
	// not alias the reused buffer.
	for i := range 3 {
		b := pb.MessageBatch{DeploymentId: uint64(7 + i), SourceAddress: "a:1",
			Requests: []pb.Message{{Type: pb.Replicate, To: 2, From: 1, ShardID: 3, Entries: []pb.Entry{{Index: uint64(i), Cmd: bytes.Repeat([]byte{byte(i)}, 100<<(2-i))}}}}}
		if err := c.SendMessageBatch(b); err != nil {
			t.Fatal(err)
		}
	}
	r.waitBatch(t, 9)
	for i := range 3 {
		b := r.waitBatch(t, uint64(7+i))
		if e := b.Requests[0].Entries[0]; e.Index != uint64(i) || !bytes.Equal(e.Cmd, bytes.Repeat([]byte{byte(i)}, 100<<(2-i))) {
			t.Fatalf("batch %d: entry %+v", i, e)
		}
	}
	sendThreeChunks(t, ctx, n1, n2.ln.Addr().String()) // Close waits: every chunk was handed on
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.chunks) != 3 || r.chunks[2].ChunkId != 2 || len(r.chunks[2].Data) != 1<<20 || r.chunks[2].Data[0] != 2 {
		t.Fatalf("chunks after Close: %d", len(r.chunks))
	}
}

// olderPeer is a listener that behaves as an older build's Dragonboat TCP
// transport (internal/transport/tcp.go serveConn): it closes a connection
// whose first bytes are not its magic, reads its frames, and answers the
// poison with the poison.
type olderPeer struct {
	ln    net.Listener
	mu    sync.Mutex
	kinds []byte // frames read, in order
	conns int    // connections accepted
}

func startOlderPeer(t *testing.T) *olderPeer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &olderPeer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns++
			p.mu.Unlock()
			go p.serve(nc)
		}
	}()
	return p
}

// waitKinds waits up to 5 s until the peer has read n frames.
func (p *olderPeer) waitKinds(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		got := len(p.kinds)
		p.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("older peer read %d frames in 5 s, want %d (go test -run TestPlainSpeaksToOlderBuild ./transport/raftls)", got, n)
		}
	}
}

func (p *olderPeer) serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	if m, err := br.Peek(2); err != nil || m[0] != dbMagic[0] || m[1] != dbMagic[1] {
		return
	}
	fr := frameReader{r: br, maxFrame: DefaultMaxFrame, dragonboat: true}
	for {
		kind, _, older, err := fr.next()
		if err != nil || !older {
			return
		}
		p.mu.Lock()
		p.kinds = append(p.kinds, kind)
		p.mu.Unlock()
		if kind == kindPoison {
			nc.Write([]byte{0, 0})
			return
		}
	}
}

// TestPlainSpeaksToOlderBuild: a peer of an older build closes the hello's
// connection; the sender dials again and sends batches, chunks and the
// poison in Dragonboat's format, and Close waits for the poison's answer.
func TestPlainSpeaksToOlderBuild(t *testing.T) {
	old := startOlderPeer(t)
	n1 := startPlain(t, &received{})
	ctx := testCtx(t)
	c, err := n1.GetConnection(ctx, old.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if !c.(*conn).older {
		t.Fatal("an older build's peer not recognised")
	}
	if err := c.SendMessageBatch(pb.MessageBatch{DeploymentId: 1}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The batch's connection and the snapshot's are read by goroutines of
	// their own: wait for the batch before the chunks are sent, so that the
	// order checked below is the order sent.
	old.waitKinds(t, 1)
	sc, err := n1.GetSnapshotConnection(ctx, old.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := sc.SendChunk(pb.Chunk{ShardID: 3, ChunkId: uint64(i), Data: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	sc.Close()
	old.waitKinds(t, 4)
	old.mu.Lock()
	defer old.mu.Unlock()
	if want := []byte{kindBatch, kindChunk, kindChunk, kindPoison}; !bytes.Equal(old.kinds, want) {
		t.Fatalf("older peer read frames %v, want %v", old.kinds, want)
	}
	if old.conns != 4 {
		t.Fatalf("%d connections, want 4 (a hello and a redial each)", old.conns)
	}
}

// TestPlainReadsOlderBuild: a plain-mode receiver hands on a batch and a
// chunk an older build sends in Dragonboat's format and answers its
// poison.
func TestPlainReadsOlderBuild(t *testing.T) {
	var r received
	n2 := startPlain(t, &r)
	nc, err := net.Dial("tcp", n2.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, _ := (&pb.MessageBatch{DeploymentId: 9, SourceAddress: "old:1"}).Marshal()
	ch, _ := (&pb.Chunk{ShardID: 4, Data: []byte("chunk")}).Marshal()
	out := append(dbFrame(dbMethodBatch, b), dbFrame(dbMethodChunk, ch)...)
	if _, err := nc.Write(append(out, 0, 0)); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 2)
	if _, err := io.ReadFull(nc, ack); err != nil || ack[0] != 0 || ack[1] != 0 {
		t.Fatalf("poison answered %x, %v", ack, err)
	}
	if got := r.waitBatch(t, 9); got.SourceAddress != "old:1" {
		t.Fatalf("batch %+v", got)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.chunks) != 1 || string(r.chunks[0].Data) != "chunk" {
		t.Fatalf("chunks %+v", r.chunks)
	}
}

// TestGarbageClosesOnlyItsConnection: bytes that are no frame close the
// connection they came on (the peer reads EOF), and a connection beside it
// still delivers.
func TestGarbageClosesOnlyItsConnection(t *testing.T) {
	good := appendFrame(nil, kindBatch, []byte("x"))
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	huge := appendFrame(nil, kindBatch, nil)
	huge[3] = 0xff // 4 GiB payload announced
	bad := []struct {
		name string
		in   []byte
	}{
		{"http request", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"checksum mismatch", badCRC},
		{"over the frame bound", huge},
		{"not a message batch", appendFrame(nil, kindBatch, []byte{0xff, 0xff, 0xff})},
		{"dragonboat header checksum", func() []byte { f := dbFrame(dbMethodBatch, []byte("x")); f[13] ^= 1; return f }()},
	}
	var r received
	n2 := startPlain(t, &r)
	n1 := startPlain(t, &received{})
	c, err := n1.GetConnection(testCtx(t), n2.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", n2.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write(tc.in)
			nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := nc.Read(make([]byte, 1)); err == nil {
				t.Fatalf("connection still open after garbage (read %d bytes)", n)
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection still open after garbage")
			}
			if err := c.SendMessageBatch(pb.MessageBatch{DeploymentId: uint64(100 + i)}); err != nil {
				t.Fatal(err)
			}
			r.waitBatch(t, uint64(100+i))
		})
	}
}

// countingConn is a net.Conn whose Writes are counted and discarded.
type countingConn struct {
	net.Conn // nil: only Write and SetWriteDeadline are called
	writes   int
	bytes    int
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes++
	c.bytes += len(b)
	return len(b), nil
}
func (c *countingConn) SetWriteDeadline(time.Time) error { return nil }

// TestOneWritePerBatch: a message batch is one Write of the whole frame,
// in either format, and sending one allocates nothing once the
// connection's buffer has grown (Dragonboat's TCP transport writes the
// magic, the header and the payload separately).
func TestOneWritePerBatch(t *testing.T) {
	b := pb.MessageBatch{DeploymentId: 1, SourceAddress: "127.0.0.1:7381",
		Requests: []pb.Message{{Type: pb.Replicate, To: 2, From: 1, ShardID: 1, Entries: []pb.Entry{{Index: 9, Cmd: make([]byte, 150)}}}}}
	want, _ := b.Marshal()
	for _, older := range []bool{false, true} {
		cc := &countingConn{}
		c := &conn{c: cc, older: older}
		if err := c.SendMessageBatch(b); err != nil {
			t.Fatal(err)
		}
		hs := headerSize
		if older {
			hs = dbHeaderSize
		}
		if cc.writes != 1 || cc.bytes != hs+len(want) {
			t.Errorf("older %v: %d writes of %d bytes, want 1 of %d", older, cc.writes, cc.bytes, hs+len(want))
		}
		if n := testing.AllocsPerRun(100, func() { c.SendMessageBatch(b) }); n != 0 {
			t.Errorf("older %v: %v allocations per batch, want 0", older, n)
		}
	}
}

// TestPlainRefusesOlderSendersChunk: a plain-mode receiver whose
// Dragonboat refuses a snapshot chunk from a sender of an older build
// (Dragonboat's format, which has no kindRefused) writes nothing back
// for it, drops the rest of the stream, and answers the stream's poison
// as Dragonboat would: the older sender's stream ends well.
func TestPlainRefusesOlderSendersChunk(t *testing.T) {
	var mu sync.Mutex
	var offered []uint64
	tr := Factory{}.Create(config.NodeHostConfig{RaftAddress: "127.0.0.1:0"},
		func(pb.MessageBatch) {},
		func(c pb.Chunk) bool {
			mu.Lock()
			defer mu.Unlock()
			offered = append(offered, c.ChunkId)
			return false
		}).(*Transport)
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	nc, err := net.Dial("tcp", tr.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var out []byte
	for i := range 3 {
		ch, _ := (&pb.Chunk{ShardID: 4, ChunkId: uint64(i), Data: []byte("chunk")}).Marshal()
		out = append(out, dbFrame(dbMethodChunk, ch)...)
	}
	if _, err := nc.Write(append(out, 0, 0)); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(nc) // the receiver closes after the poison
	if err != nil || !bytes.Equal(got, dbPoison[:]) {
		t.Fatalf("the older sender read %x (%v), want only the poison's answer %x", got, err, dbPoison[:])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(offered) != 1 || offered[0] != 0 {
		t.Fatalf("chunks offered to Dragonboat: %v, want only the first (the rest of a refused stream is dropped)", offered)
	}
}
