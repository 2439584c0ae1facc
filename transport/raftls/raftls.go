// Package raftls is dialkv's Raft transport for Dragonboat
// (config.TransportFactory), over mutual TLS whose handshake also checks
// *who* the other side is, or over plain TCP.
//
// TLS mode (Factory.Server and Factory.Client set): Dragonboat's own TCP
// transport with NodeHostConfig.MutualTLS accepts any certificate its CA
// signed, a client certificate included. This transport takes full
// tls.Configs instead, so the caller decides: dialkv requires a node
// certificate (server use allowed) whose name is a node of the namespace
// (security.NodeIdentity), on both the accepting and the dialling side.
// Nothing is read from a connection before its handshake succeeded.
//
// Plain mode (neither set): the same frames over TCP, no authentication
// (as Dragonboat's TCP transport without TLS). It replaces Dragonboat's
// TCP transport for two reasons: a refused snapshot stream stays open
// (below), and a message batch costs one write(2) from a reused buffer
// (Dragonboat's writes the magic, the header and the payload separately,
// from a buffer allocated per snapshot chunk).
//
// Wire format, one frame per message batch or snapshot chunk:
//
//	magic (2 bytes, "DR") | kind (1) | length (4, big endian) | CRC-32C of the payload (4) | payload
//
// kind 1 is a raftpb.MessageBatch, 2 a raftpb.Chunk, 3 "close" (a snapshot
// connection's last frame; the receiver answers with one byte after it has
// handed every chunk on, so the sender's Close does not cut off the tail),
// 5 "hello" (plain mode, below). A frame with a bad magic, kind, length or
// checksum is an ErrBadFrame and closes that connection only.
//
// The receiver of a snapshot stream answers with single bytes: kindClose
// after the close frame, and kindRefused, at most once and before it, when
// Dragonboat refused a chunk. A refused stream stays open: the receiver
// reads and drops its remaining chunks up to the close frame, and the
// sender, once it has read kindRefused, sends none of the rest and reports
// every SendChunk as done. Closing the connection instead fails the
// sender's next chunk, and Dragonboat's transport counts a failed snapshot
// stream against the circuit breaker it shares with the message connection
// of that address: one failure trips it, and every message to the peer
// (heartbeats, appends) is dropped for 500 ms ± 50%. For Raft a refused and
// a completed stream are alike: the leader puts the follower in wait state
// after either (handleLeaderSnapshotStatus) and probes it again.
// For the same breaker's sake a message connection that was idle for
// 100 ms and whose peer hung up (the peer restarted since) is dialled
// again before its next batch instead of failing it (SendMessageBatch).
//
// Older builds (rolling upgrades, plain mode only). Builds before session
// 7 ran plain-TCP namespaces over Dragonboat's TCP transport, whose frames
// are magic 0xAE 0x7D | method (2: 100 batch, 200 chunk) | size (8) |
// CRC-32 (IEEE) of the header (4) | CRC-32 (IEEE) of the payload (4) |
// payload, and whose snapshot stream ends with the "poison" bytes 0x00
// 0x00, answered alike. A plain-mode receiver reads both formats, frame by
// frame. A plain-mode sender opens every connection with a hello frame; a
// receiver of this build answers kindHello, one of an older build closes
// the connection at the unknown magic, and the sender then dials again and
// speaks Dragonboat's format on that connection. So nodes of both builds
// exchange messages and snapshots in any mix, and nothing has to be set
// for a rolling upgrade. (TLS mode is unchanged: older builds ran TLS
// namespaces over this transport already.)
package raftls

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/dialkv/dialkv/transport"
)

// Name is the transport's name in TLS mode (raftio.ITransport.Name).
const Name = "dialkv-raft-tls"

// PlainName is the transport's name in plain mode.
const PlainName = "dialkv-raft-tcp"

// Frame kinds.
const (
	kindBatch byte = 1
	kindChunk byte = 2
	kindClose byte = 3
	// kindRefused is never a frame: it is the byte a snapshot stream's
	// receiver sends back when Dragonboat refused one of its chunks.
	kindRefused byte = 4
	// kindHello opens a plain-mode connection; the receiver answers with
	// the same byte (an older build closes the connection instead).
	kindHello byte = 5
	// kindPoison is never a frame of this format: the frame reader returns
	// it for Dragonboat's end-of-stream bytes (0x00 0x00), which the
	// receiver answers with the same two bytes.
	kindPoison byte = 6
)

const headerSize = 11

// Dragonboat's TCP transport format (internal/transport/tcp.go), spoken
// with nodes of older builds in plain mode: its magic, then an 18-byte
// request header.
const (
	dbHeaderSize         = 2 + 18
	dbMethodBatch uint16 = 100
	dbMethodChunk uint16 = 200
)

// DefaultMaxFrame bounds a frame's payload (Dragonboat's own bound on a
// message batch is 64 MiB; snapshot chunks are 2 MiB).
const DefaultMaxFrame = 96 << 20

// keepBuf bounds the send and receive buffers a connection keeps for its
// next frame (a snapshot chunk is 2 MiB); a larger one is dropped after
// use.
const keepBuf = 4 << 20

// readBufSize is a receiving connection's read buffer: a frame's header
// and a small batch arrive with one read(2).
const readBufSize = 64 << 10

var (
	magic   = [2]byte{'D', 'R'}
	dbMagic = [2]byte{0xAE, 0x7D}
	// dbPoison ends a snapshot stream in Dragonboat's format; the
	// receiver answers it with the same two bytes.
	dbPoison = [2]byte{0, 0}
	crcTab   = crc32.MakeTable(crc32.Castagnoli)
)

// ErrBadFrame is wrapped by errors about a malformed frame.
var ErrBadFrame = errors.New("raftls: bad frame")

// errOlderPeer: the peer closed the connection at the hello frame, as a
// node of an older build (Dragonboat's TCP transport) does.
var errOlderPeer = errors.New("raftls: peer speaks Dragonboat's TCP format")

// Factory makes the transport; set it as NodeHostConfig.Expert.TransportFactory
// (consistency/raft: Config.TransportFactory). Server and Client both set:
// TLS mode; both nil: plain mode.
type Factory struct {
	// Server is the accepting side's configuration; it must demand and
	// verify client certificates (tls.RequireAndVerifyClientCert) and
	// check their identity in VerifyConnection.
	Server *tls.Config
	// Client is the dialling side's configuration (certificate, roots,
	// VerifyConnection); ServerName is set to the host of each target.
	Client *tls.Config
	// Logger receives refused handshakes, bad frames, peers of older
	// builds and idle connections dialled again (nil: none).
	Logger *slog.Logger
	// MaxFrame bounds a frame's payload (0: DefaultMaxFrame).
	MaxFrame int
	// HandshakeTimeout bounds a dial with its TLS handshake or hello
	// exchange (0: 5 s).
	HandshakeTimeout time.Duration
	// Conns, if set, tracks every TLS connection, accepted and dialled,
	// once its handshake succeeded, so a revoked peer's can be closed
	// (transport.TLSConns.CloseIf); Dragonboat then redials, and the
	// handshake refuses the revoked certificate.
	Conns *transport.TLSConns
}

var _ config.TransportFactory = Factory{}

// Create implements config.TransportFactory.
func (f Factory) Create(nhc config.NodeHostConfig, mh raftio.MessageHandler, ch raftio.ChunkHandler) raftio.ITransport {
	if f.MaxFrame <= 0 {
		f.MaxFrame = DefaultMaxFrame
	}
	if f.HandshakeTimeout <= 0 {
		f.HandshakeTimeout = 5 * time.Second
	}
	return &Transport{f: f, addr: nhc.GetListenAddress(), onBatch: mh, onChunk: ch, conns: map[net.Conn]struct{}{}}
}

// Validate implements config.TransportFactory: addresses are host:port.
func (Factory) Validate(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	p, err := strconv.Atoi(port)
	return err == nil && p > 0 && p < 65536
}

// Transport is one NodeHost's raftio.ITransport.
type Transport struct {
	f       Factory
	addr    string
	onBatch raftio.MessageHandler
	onChunk raftio.ChunkHandler

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{} // accepted, closed by Close
	closed bool
	wg     sync.WaitGroup
}

var _ raftio.ITransport = (*Transport)(nil)

// plain reports plain mode (no TLS).
func (t *Transport) plain() bool { return t.f.Server == nil }

// Name implements raftio.ITransport.
func (t *Transport) Name() string {
	if t.plain() {
		return PlainName
	}
	return Name
}

// Start listens on the NodeHost's listen (or Raft) address.
func (t *Transport) Start() error {
	if (t.f.Server == nil) != (t.f.Client == nil) {
		return errors.New("raftls: Factory needs both a Server and a Client TLS configuration (TLS) or neither (plain TCP)")
	}
	ln, err := net.Listen("tcp", t.addr)
	if err != nil {
		return fmt.Errorf("raftls: listen on %s: %w", t.addr, err)
	}
	t.mu.Lock()
	t.ln = ln
	t.mu.Unlock()
	t.wg.Add(1)
	go t.accept(ln)
	return nil
}

func (t *Transport) accept(ln net.Listener) {
	defer t.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return // closed
		}
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			nc.Close()
			return
		}
		t.conns[nc] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go t.serve(nc)
	}
}

func (t *Transport) logf(msg string, args ...any) {
	if t.f.Logger != nil {
		t.f.Logger.Warn(msg, args...)
	}
}

// serve completes the TLS handshake (refusing the connection if the
// identity check fails), then hands every frame on in order.
func (t *Transport) serve(nc net.Conn) {
	defer t.wg.Done()
	defer func() {
		nc.Close()
		t.mu.Lock()
		delete(t.conns, nc)
		t.mu.Unlock()
	}()
	c := nc
	if !t.plain() {
		tc := tls.Server(nc, t.f.Server)
		tc.SetDeadline(time.Now().Add(t.f.HandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			t.logf("raft connection refused", "remote", nc.RemoteAddr().String(), "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
		defer t.f.Conns.Add(tc)()
		c = tc
	}
	fr := frameReader{r: bufio.NewReaderSize(c, readBufSize), maxFrame: t.f.MaxFrame, dragonboat: t.plain()}
	reply := func(b ...byte) bool {
		c.SetWriteDeadline(time.Now().Add(t.f.HandshakeTimeout))
		_, err := c.Write(b)
		return err == nil
	}
	// refused: Dragonboat refused a chunk of this connection's snapshot
	// stream; the rest of the stream is read and dropped.
	refused := false
	for {
		kind, payload, older, err := fr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.logf("raft connection dropped", "remote", nc.RemoteAddr().String(), "err", err)
			}
			return
		}
		switch kind {
		case kindBatch:
			// Unmarshal copies every byte slice out of payload (whose
			// buffer the next frame reuses).
			var b pb.MessageBatch
			if err := b.Unmarshal(payload); err != nil {
				t.logf("raft connection dropped: bad message batch", "remote", nc.RemoteAddr().String(), "err", err)
				return
			}
			t.onBatch(b)
		case kindChunk:
			if refused {
				continue
			}
			var ch pb.Chunk
			if err := ch.Unmarshal(payload); err != nil {
				t.logf("raft connection dropped: bad snapshot chunk", "remote", nc.RemoteAddr().String(), "err", err)
				return
			}
			if !t.onChunk(ch) {
				// Keep the connection (see the package comment): tell
				// the sender to stop and drop what it already sent. A
				// sender of an older build (Dragonboat's format) does not
				// know kindRefused: it sends the rest, dropped here too,
				// and its stream still ends well.
				refused = true
				if !older && !reply(kindRefused) {
					return
				}
			}
		case kindClose:
			reply(kindClose)
			return
		case kindPoison:
			reply(dbPoison[:]...)
			return
		case kindHello:
			if !reply(kindHello) {
				return
			}
		}
	}
}

// frameReader reads one connection's frames. A payload it returns is valid
// until the next call: the buffer is reused (Dragonboat's Unmarshal copies
// every byte slice out, as its own transport relies on).
type frameReader struct {
	r        *bufio.Reader
	maxFrame int
	// dragonboat: also read Dragonboat's TCP format (plain mode: nodes of
	// older builds).
	dragonboat bool
	hdr        [dbHeaderSize]byte
	buf        []byte
}

// next reads one frame: its kind, payload, and whether it came in
// Dragonboat's format. A malformed frame is an error wrapping ErrBadFrame.
func (fr *frameReader) next() (kind byte, payload []byte, older bool, err error) {
	m := fr.hdr[:2]
	if _, err := io.ReadFull(fr.r, m); err != nil {
		return 0, nil, false, err
	}
	switch {
	case m[0] == magic[0] && m[1] == magic[1]:
		h := fr.hdr[2:headerSize]
		if _, err := io.ReadFull(fr.r, h); err != nil {
			return 0, nil, false, fmt.Errorf("%w: short header: %w", ErrBadFrame, err)
		}
		kind = h[0]
		if kind < kindBatch || kind > kindHello || kind == kindRefused {
			return 0, nil, false, fmt.Errorf("%w: kind %d", ErrBadFrame, kind)
		}
		payload, err := fr.payload(uint64(binary.BigEndian.Uint32(h[1:5])))
		if err != nil {
			return 0, nil, false, err
		}
		if crc32.Checksum(payload, crcTab) != binary.BigEndian.Uint32(h[5:9]) {
			return 0, nil, false, fmt.Errorf("%w: checksum mismatch", ErrBadFrame)
		}
		return kind, payload, false, nil
	case fr.dragonboat && m[0] == dbMagic[0] && m[1] == dbMagic[1]:
		h := fr.hdr[2:dbHeaderSize]
		if _, err := io.ReadFull(fr.r, h); err != nil {
			return 0, nil, true, fmt.Errorf("%w: short header: %w", ErrBadFrame, err)
		}
		// The header's checksum covers the header with the checksum
		// field zeroed (requestHeader.encode).
		want := binary.BigEndian.Uint32(h[10:14])
		binary.BigEndian.PutUint32(h[10:14], 0)
		if crc32.ChecksumIEEE(h) != want {
			return 0, nil, true, fmt.Errorf("%w: header checksum mismatch", ErrBadFrame)
		}
		switch binary.BigEndian.Uint16(h[0:2]) {
		case dbMethodBatch:
			kind = kindBatch
		case dbMethodChunk:
			kind = kindChunk
		default:
			return 0, nil, true, fmt.Errorf("%w: method %d", ErrBadFrame, binary.BigEndian.Uint16(h[0:2]))
		}
		size := binary.BigEndian.Uint64(h[2:10])
		if size == 0 {
			return 0, nil, true, fmt.Errorf("%w: empty payload", ErrBadFrame)
		}
		payload, err := fr.payload(size)
		if err != nil {
			return 0, nil, true, err
		}
		if crc32.ChecksumIEEE(payload) != binary.BigEndian.Uint32(h[14:18]) {
			return 0, nil, true, fmt.Errorf("%w: checksum mismatch", ErrBadFrame)
		}
		return kind, payload, true, nil
	case fr.dragonboat && m[0] == dbPoison[0] && m[1] == dbPoison[1]:
		return kindPoison, nil, true, nil
	}
	return 0, nil, false, fmt.Errorf("%w: magic %x", ErrBadFrame, m)
}

// payload reads n bytes (bounded by maxFrame) into the reused buffer.
func (fr *frameReader) payload(n uint64) ([]byte, error) {
	if n > uint64(fr.maxFrame) {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadFrame, n, fr.maxFrame)
	}
	var b []byte
	if int(n) <= cap(fr.buf) {
		b = fr.buf[:n]
	} else {
		b = make([]byte, n)
		if n <= keepBuf {
			fr.buf = b
		}
	}
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return nil, fmt.Errorf("%w: short payload: %w", ErrBadFrame, err)
	}
	return b, nil
}

// putHeader fills h (headerSize bytes) with the header of a frame of kind
// around payload.
func putHeader(h []byte, kind byte, payload []byte) {
	h[0], h[1], h[2] = magic[0], magic[1], kind
	binary.BigEndian.PutUint32(h[3:7], uint32(len(payload)))
	binary.BigEndian.PutUint32(h[7:11], crc32.Checksum(payload, crcTab))
}

// appendFrame appends a frame of kind around payload to dst.
func appendFrame(dst []byte, kind byte, payload []byte) []byte {
	var h [headerSize]byte
	putHeader(h[:], kind, payload)
	return append(append(dst, h[:]...), payload...)
}

// putDragonboatHeader fills h (dbHeaderSize bytes) with Dragonboat's
// magic and request header for payload (requestHeader.encode).
func putDragonboatHeader(h []byte, method uint16, payload []byte) {
	h[0], h[1] = dbMagic[0], dbMagic[1]
	r := h[2:dbHeaderSize]
	binary.BigEndian.PutUint16(r[0:2], method)
	binary.BigEndian.PutUint64(r[2:10], uint64(len(payload)))
	binary.BigEndian.PutUint32(r[10:14], 0)
	binary.BigEndian.PutUint32(r[14:18], crc32.ChecksumIEEE(payload))
	binary.BigEndian.PutUint32(r[10:14], crc32.ChecksumIEEE(r))
}

// Close stops accepting, closes every accepted connection and waits for
// their goroutines.
func (t *Transport) Close() error {
	t.mu.Lock()
	t.closed = true
	if t.ln != nil {
		t.ln.Close()
	}
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return nil
}

// dial connects to target. TLS mode: with a handshake that checks the
// target's identity (t.f.Client.VerifyConnection) and its name (the host
// of target, as Dragonboat's own transport does). Plain mode: with the
// hello exchange; older reports a peer of an older build, dialled again to
// be spoken to in Dragonboat's format.
func (t *Transport) dial(ctx context.Context, target string) (c net.Conn, older bool, err error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, false, fmt.Errorf("raftls: target %q: %w", target, err)
	}
	dctx, cancel := context.WithTimeout(ctx, t.f.HandshakeTimeout)
	defer cancel()
	if !t.plain() {
		cfg := t.f.Client.Clone()
		cfg.ServerName = host
		d := tls.Dialer{Config: cfg}
		nc, err := d.DialContext(dctx, "tcp", target)
		if err != nil {
			return nil, false, fmt.Errorf("raftls: dial %s: %w", target, err)
		}
		return nc, false, nil
	}
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", target)
	if err != nil {
		return nil, false, fmt.Errorf("raftls: dial %s: %w", target, err)
	}
	deadline, _ := dctx.Deadline()
	err = hello(nc, deadline)
	if err == nil {
		return nc, false, nil
	}
	nc.Close()
	if !errors.Is(err, errOlderPeer) {
		return nil, false, fmt.Errorf("raftls: dial %s: %w", target, err)
	}
	if t.f.Logger != nil {
		t.f.Logger.Info("raft peer of an older build: speaking Dragonboat's TCP format to it", "target", target)
	}
	nc, err = d.DialContext(dctx, "tcp", target)
	if err != nil {
		return nil, false, fmt.Errorf("raftls: dial %s: %w", target, err)
	}
	return nc, true, nil
}

// helloFrame opens every plain-mode connection.
var helloFrame = appendFrame(nil, kindHello, nil)

// hello sends the hello frame and reads the answer by deadline: nil when
// the peer answered kindHello, errOlderPeer when it closed the connection
// (an older build's Dragonboat transport closes at an unknown magic).
func hello(nc net.Conn, deadline time.Time) error {
	nc.SetDeadline(deadline)
	var b [1]byte
	_, err := nc.Write(helloFrame)
	if err == nil {
		_, err = io.ReadFull(nc, b[:])
	}
	switch {
	case err == nil && b[0] == kindHello:
		nc.SetDeadline(time.Time{})
		return nil
	case err == nil:
		return fmt.Errorf("%w: hello answered with %#x", ErrBadFrame, b[0])
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errOlderPeer
	}
	return fmt.Errorf("hello: %w", err)
}

// writeTimeout bounds one frame's write: a peer that stops reading does
// not hold Dragonboat's sender forever.
const writeTimeout = 30 * time.Second

// track adds c to Factory.Conns if it is a TLS connection; the returned
// function removes it.
func (t *Transport) track(c net.Conn) func() {
	if tc, ok := c.(*tls.Conn); ok {
		return t.f.Conns.Add(tc)
	}
	return func() {}
}

// GetConnection implements raftio.ITransport.
func (t *Transport) GetConnection(ctx context.Context, target string) (raftio.IConnection, error) {
	c, older, err := t.dial(ctx, target)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, older: older, untrack: t.track(c), t: t, target: target, lastWrite: time.Now()}, nil
}

// GetSnapshotConnection implements raftio.ITransport.
func (t *Transport) GetSnapshotConnection(ctx context.Context, target string) (raftio.ISnapshotConnection, error) {
	c, older, err := t.dial(ctx, target)
	if err != nil {
		return nil, err
	}
	sc := &snapConn{conn: conn{c: c, older: older, untrack: t.track(c)}, done: make(chan struct{})}
	if older {
		close(sc.done) // an older build answers only the poison (Close)
	} else {
		go sc.readReplies()
	}
	return sc, nil
}

// conn sends message batches; Dragonboat uses each from one goroutine.
type conn struct {
	c net.Conn
	// older: the peer is of an older build; frames are in Dragonboat's
	// TCP format.
	older   bool
	buf     []byte    // the frame being sent, reused
	renewAt time.Time // when the write deadline is next pushed ahead
	untrack func()    // removes c from Factory.Conns
	// t and target: a message connection is dialled again to target when
	// its peer hung up while it was idle (SendMessageBatch); nil t (a
	// snapshot connection): never.
	t         *Transport
	target    string
	lastWrite time.Time // the last write (or the dial)
}

// redialIdleAfter: SendMessageBatch checks a message connection that has
// not been written to for this long before it writes (see there). At the
// default RTT (10 ms) a leader and its followers write every heartbeat, so
// busy connections are never checked; a process restarts in far longer.
const redialIdleAfter = 100 * time.Millisecond

var _ raftio.IConnection = (*conn)(nil)

// frame returns c.buf grown to a frame of a payload of up to size bytes,
// and the header's size: the payload is marshalled at buf[hs:], then
// finish writes the frame.
func (c *conn) frame(size int) (buf []byte, hs int) {
	hs = headerSize
	if c.older {
		hs = dbHeaderSize
	}
	if cap(c.buf) < hs+size {
		c.buf = make([]byte, hs+size)
	}
	return c.buf[:hs+size], hs
}

// finish puts the header of a frame of kind before the n payload bytes at
// buf[hs:] and sends header and payload with one Write (buf is c.buf,
// reused from frame to frame).
func (c *conn) finish(kind byte, buf []byte, hs, n int) error {
	buf = buf[:hs+n]
	if c.older {
		method := dbMethodBatch
		if kind == kindChunk {
			method = dbMethodChunk
		}
		putDragonboatHeader(buf[:hs], method, buf[hs:])
	} else {
		putHeader(buf[:hs], kind, buf[hs:])
	}
	err := c.write(buf)
	if cap(c.buf) > keepBuf {
		c.buf = nil // do not keep a large batch's buffer
	}
	return err
}

// write writes b. The write deadline is pushed writeTimeout ahead at most
// once a second (each SetWriteDeadline re-arms a runtime timer), so a
// peer that stops reading fails a write within writeTimeout.
func (c *conn) write(b []byte) error {
	now := time.Now()
	if now.After(c.renewAt) {
		c.c.SetWriteDeadline(now.Add(writeTimeout))
		c.renewAt = now.Add(time.Second)
	}
	c.lastWrite = now
	_, err := c.c.Write(b)
	return err
}

// SendMessageBatch implements raftio.IConnection.
//
// A message connection that was idle for redialIdleAfter is first checked
// for a peer that hung up (transport.PeerHungUp: the peer process died or
// restarted since the last write); such a connection is replaced by a new
// one to the same target before the batch is written. Written to the dead
// connection, the batch would be lost (the first write after the peer's
// FIN succeeds locally and draws a reset) and the next write would fail,
// which trips Dragonboat's circuit breaker for the address: every message
// to the peer is then dropped for 500 ms ± 50%, growing to 1 s. That is
// what delayed elections after a leader's crash by 0.5–1.8 s: two
// followers never write to each other while a leader lives, so a
// follower's connection to a peer that restarted earlier stays dead until
// the election, whose (pre)vote messages it then drops (docs/raft.md,
// "Failover outliers").
func (c *conn) SendMessageBatch(b pb.MessageBatch) error {
	if c.t != nil && time.Since(c.lastWrite) >= redialIdleAfter && transport.PeerHungUp(c.c) {
		if err := c.redial(); err != nil {
			return err
		}
	}
	buf, hs := c.frame(b.SizeUpperLimit())
	n, err := b.MarshalTo(buf[hs:])
	if err != nil {
		return fmt.Errorf("raftls: marshal message batch: %w", err)
	}
	return c.finish(kindBatch, buf, hs, n)
}

// redial replaces the connection by a new one to c.target (the peer hung
// up). On error the old connection stays (closed), so the caller's error
// ends it as before: Dragonboat's transport then dials afresh later.
func (c *conn) redial() error {
	if c.t.f.Logger != nil {
		c.t.f.Logger.Info("raft peer hung up an idle connection: dialling it again", "target", c.target)
	}
	c.c.Close()
	c.untrack()
	c.untrack = func() {}
	nc, older, err := c.t.dial(context.Background(), c.target)
	if err != nil {
		return fmt.Errorf("raftls: peer %s hung up, dial again: %w", c.target, err)
	}
	c.c, c.older, c.untrack = nc, older, c.t.track(nc)
	c.renewAt, c.lastWrite = time.Time{}, time.Now()
	return nil
}

// Close implements raftio.IConnection.
func (c *conn) Close() {
	c.c.Close()
	c.untrack()
}

// snapConn sends snapshot chunks; Dragonboat uses each from one goroutine,
// and readReplies reads the receiver's answers beside it.
type snapConn struct {
	conn
	refused atomic.Bool   // the receiver refused a chunk: send no more
	done    chan struct{} // closed by readReplies after kindClose or an error
}

var _ raftio.ISnapshotConnection = (*snapConn)(nil)

// readReplies reads the receiver's one-byte answers until kindClose (the
// acknowledgement Close waits for) or an error (the connection closed).
func (c *snapConn) readReplies() {
	defer close(c.done)
	var b [1]byte
	for {
		if _, err := io.ReadFull(c.c, b[:]); err != nil {
			return
		}
		switch b[0] {
		case kindRefused:
			c.refused.Store(true)
		case kindClose:
			return
		}
	}
}

// SendChunk implements raftio.ISnapshotConnection. Once the receiver has
// refused a chunk, the rest of the stream is dropped here and reported as
// sent: an error would trip Dragonboat's breaker for the peer (see the
// package comment).
func (c *snapConn) SendChunk(ch pb.Chunk) error {
	if c.refused.Load() {
		return nil
	}
	buf, hs := c.frame(ch.Size())
	n, err := ch.MarshalTo(buf[hs:])
	if err != nil {
		return fmt.Errorf("raftls: marshal snapshot chunk: %w", err)
	}
	return c.finish(kindChunk, buf, hs, n)
}

// Close sends the close frame (Dragonboat's poison to an older build) and
// waits (bounded) for the receiver's acknowledgement, so every chunk sent
// was handed on before the socket closes.
func (c *snapConn) Close() {
	defer c.untrack()
	if c.older {
		var ack [2]byte
		if c.write(dbPoison[:]) == nil {
			c.c.SetReadDeadline(time.Now().Add(writeTimeout))
			io.ReadFull(c.c, ack[:])
		}
		c.c.Close()
		return
	}
	buf, hs := c.frame(0)
	if c.finish(kindClose, buf, hs, 0) == nil {
		select {
		case <-c.done:
		case <-time.After(writeTimeout):
		}
	}
	c.c.Close()
	<-c.done
}
