package transport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	peer "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkvpeer"
)

type inbox struct {
	mu   sync.Mutex
	msgs []PeerMessage
}

func (b *inbox) add(m PeerMessage) { b.mu.Lock(); b.msgs = append(b.msgs, m); b.mu.Unlock() }
func (b *inbox) len() int          { b.mu.Lock(); defer b.mu.Unlock(); return len(b.msgs) }

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deliverAll sends one message (namespace ns, from a to b) per body
// through a fresh sender to a fresh peer server of cluster c1, and waits
// until every one has reached the server's handler; both are closed when
// the test ends.
func deliverAll(t *testing.T, bodies [][]byte) (*inbox, *PeerSender) {
	t.Helper()
	in := &inbox{}
	srv, err := ListenPeer("127.0.0.1:0", "c1", in.add, PeerServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	snd := NewPeerSender(srv.Addr(), "c1", PeerSenderOptions{})
	t.Cleanup(func() { snd.Close() })
	for i, b := range bodies {
		if !snd.Send(PeerMessage{Namespace: "ns", From: "a", To: "b", Body: b}) {
			t.Fatalf("message %d dropped by an empty queue", i)
		}
	}
	waitFor(t, "delivery", func() bool { return in.len() == len(bodies) })
	return in, snd
}

func TestPeerDeliversInOrderWithChecksums(t *testing.T) {
	const n = 1000
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = []byte(fmt.Sprint(i))
	}
	in, snd := deliverAll(t, bodies)
	for i, m := range in.msgs {
		if string(m.Body) != fmt.Sprint(i) || m.Namespace != "ns" || m.From != "a" || m.To != "b" {
			t.Fatalf("message %d arrived as %+v", i, m)
		}
	}
	// The handler runs before the peer's answer reaches the sender, so the
	// sender's count of accepted messages catches up a moment later.
	waitFor(t, "the sender's count", func() bool { return snd.Stats().Delivered == n })
	if st := snd.Stats(); st.Dropped != 0 || st.SendErrors != 0 {
		t.Fatalf("sender stats %+v", st)
	}
}

// TestPeerBodiesAreNotReused: a delivered body is the receiver's to keep
// (consistency.Message: immutable, a backup's store keeps slices of it), so
// the peer server hands each body over in an array of its own — never a
// read buffer it reuses for the next message, nor the sender's array. The
// handler keeps every body; after all have arrived, each still holds what
// was sent and no two share an array. Fails if the server delivered bodies
// from a reused buffer (checked by copying each into one in Deliver).
//
//	go test -run TestPeerBodiesAreNotReused ./transport
func TestPeerBodiesAreNotReused(t *testing.T) {
	const n = 300
	sent := make([][]byte, n)
	for i := range sent {
		sent[i] = []byte(fmt.Sprintf("body %4d %s", i, string(make([]byte, 40+i%7))))
	}
	in, _ := deliverAll(t, sent)
	in.mu.Lock()
	defer in.mu.Unlock()
	arrays := map[*byte]int{}
	for i, m := range in.msgs {
		if string(m.Body) != string(sent[i]) {
			t.Fatalf("message %d holds %q after later deliveries, want %q", i, m.Body, sent[i])
		}
		p := &m.Body[:cap(m.Body)][cap(m.Body)-1]
		if j, ok := arrays[p]; ok {
			t.Fatalf("messages %d and %d share one array", j, i)
		}
		arrays[p] = i
		if &m.Body[0] == &sent[i][0] {
			t.Fatalf("message %d was delivered in the sender's array", i)
		}
	}
}

// A message whose body does not match its checksum never reaches the
// handler; other clusters are refused.
func TestPeerRejectsCorruptionAndOtherClusters(t *testing.T) {
	var in inbox
	srv, err := ListenPeer("127.0.0.1:0", "c1", in.add, PeerServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := &thrift.TConfiguration{}
	tr := thrift.NewTFramedTransportConf(thrift.NewTSocketConf(srv.Addr(), cfg), cfg)
	if err := tr.Open(); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cl := peer.NewPeerClientFactory(tr, thrift.NewTBinaryProtocolFactoryConf(cfg))
	good := toWire(PeerMessage{Namespace: "ns", Body: []byte("hello")})
	bad := toWire(PeerMessage{Namespace: "ns", Body: []byte("hello")})
	bad.Body = []byte("hellp") // flipped in flight
	n, err := cl.Deliver(context.Background(), "c1", []*peer.PeerMessage{good, bad})
	if err != nil || n != 1 {
		t.Fatalf("deliver: n=%d err=%v, want 1 accepted", n, err)
	}
	if in.len() != 1 || srv.Stats().BadChecksum != 1 {
		t.Fatalf("handler got %d messages, bad checksums %d; want 1 and 1", in.len(), srv.Stats().BadChecksum)
	}
	if _, err := cl.Deliver(context.Background(), "other", []*peer.PeerMessage{good}); err == nil {
		t.Fatal("a message of another cluster was accepted")
	}
	if in.len() != 1 {
		t.Fatal("a rejected message reached the handler")
	}
}

// The sender survives its peer going away and coming back on the same
// address: it drops while the peer is down and delivers again afterwards.
func TestPeerSenderReconnects(t *testing.T) {
	var in inbox
	srv, err := ListenPeer("127.0.0.1:0", "c1", in.add, PeerServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	snd := NewPeerSender(addr, "c1", PeerSenderOptions{MaxBackoff: 50 * time.Millisecond, Timeout: 200 * time.Millisecond})
	defer snd.Close()
	snd.Send(PeerMessage{Body: []byte("1")})
	waitFor(t, "first delivery", func() bool { return in.len() == 1 })
	srv.Close()
	for i := 0; i < 5; i++ {
		snd.Send(PeerMessage{Body: []byte("lost")})
		time.Sleep(10 * time.Millisecond)
	}
	waitFor(t, "drops while down", func() bool { return snd.Stats().Dropped > 0 })
	srv2, err := ListenPeer(addr, "c1", in.add, PeerServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	waitFor(t, "delivery after the peer came back", func() bool {
		snd.Send(PeerMessage{Body: []byte("again")})
		time.Sleep(20 * time.Millisecond)
		return srv2.Stats().Delivered > 0
	})
}

// Wake ends a reconnect backoff at once: with a backoff of an hour (the
// seeded jitter's first sleep is checked to be long), a message sent after
// the peer came back arrives only because of Wake; without it the sender
// would still be asleep when the wait below gives up.
func TestPeerSenderWake(t *testing.T) {
	const seed = 7
	first := time.Duration(rand.New(rand.NewPCG(seed, 0x5eed)).Int64N(int64(time.Hour)))
	if first < 10*time.Minute {
		t.Fatalf("seed %d: the first backoff sleep is %v: pick a seed whose sleep outlasts the test", seed, first)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens: the first dial is refused
	snd := NewPeerSender(addr, "c1", PeerSenderOptions{MinBackoff: time.Hour, MaxBackoff: time.Hour, Timeout: time.Second, Seed: seed})
	defer snd.Close()
	snd.Send(PeerMessage{Body: []byte("lost")})
	waitFor(t, "a refused dial", func() bool { return snd.Stats().SendErrors > 0 })
	var in inbox
	srv, err := ListenPeer(addr, "c1", in.add, PeerServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	snd.Send(PeerMessage{Body: []byte("after")})
	snd.Wake()
	deadline := time.Now().Add(30 * time.Second)
	for in.len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no delivery 30 s after Wake (the sender sleeps %v without it): %+v", first, snd.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := string(in.msgs[0].Body); got != "after" {
		t.Fatalf("delivered %q, want \"after\"", got)
	}
}

// Garbage on the peer port closes that connection only; the server keeps
// delivering for everyone else.
func TestPeerSurvivesGarbage(t *testing.T) {
	var in inbox
	srv, err := ListenPeer("127.0.0.1:0", "c1", in.add, PeerServerOptions{MaxFrame: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{0x7f, 0xff, 0xff, 0xff, 1, 2, 3}, // a frame far over the limit
		{0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef},
	} {
		nc, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(junk)
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		for {
			if _, err := nc.Read(buf); err != nil {
				break // closed by the server (or deadline: then the next check fails)
			}
		}
		nc.Close()
	}
	snd := NewPeerSender(srv.Addr(), "c1", PeerSenderOptions{})
	defer snd.Close()
	snd.Send(PeerMessage{Body: []byte("still here")})
	waitFor(t, "delivery after garbage", func() bool { return in.len() == 1 })
}
