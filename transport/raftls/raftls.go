// Package raftls is a Raft transport for Dragonboat (config.TransportFactory)
// over mutual TLS whose handshake also checks *who* the other side is.
//
// Dragonboat's own TCP transport with NodeHostConfig.MutualTLS accepts any
// certificate its CA signed, a client certificate included. This transport
// takes full tls.Configs instead, so the caller decides: dialkv requires a
// node certificate (server use allowed) whose name is a node of the
// namespace (security.NodeIdentity), on both the accepting and the dialling
// side. Nothing is read from a connection before its handshake succeeded.
//
// Wire format, one frame per message batch or snapshot chunk:
//
//	magic (2 bytes, "DR") | kind (1) | length (4, big endian) | CRC-32C of the payload (4) | payload
//
// kind 1 is a raftpb.MessageBatch, 2 a raftpb.Chunk, 3 "close" (a snapshot
// connection's last frame; the receiver answers with one byte after it has
// handed every chunk on, so the sender's Close does not cut off the tail).
// A frame with a bad magic, kind, length or checksum closes the connection.
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
package raftls

import (
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
	"time"

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"

	"github.com/dialkv/dialkv/transport"
)

// Name is the transport's name (raftio.ITransport.Name).
const Name = "dialkv-raft-tls"

// Frame kinds.
const (
	kindBatch byte = 1
	kindChunk byte = 2
	kindClose byte = 3
	// kindRefused is never a frame: it is the byte a snapshot stream's
	// receiver sends back when Dragonboat refused one of its chunks.
	kindRefused byte = 4
)

const headerSize = 11

// DefaultMaxFrame bounds a frame's payload (Dragonboat's own bound on a
// message batch is 64 MiB; snapshot chunks are 2 MiB).
const DefaultMaxFrame = 96 << 20

var (
	magic  = [2]byte{'D', 'R'}
	crcTab = crc32.MakeTable(crc32.Castagnoli)
)

// ErrBadFrame is wrapped by errors about a malformed frame.
var ErrBadFrame = errors.New("raftls: bad frame")

// Factory makes the transport; set it as NodeHostConfig.Expert.TransportFactory
// (consistency/raft: Config.TransportFactory).
type Factory struct {
	// Server is the accepting side's configuration; it must demand and
	// verify client certificates (tls.RequireAndVerifyClientCert) and
	// check their identity in VerifyConnection.
	Server *tls.Config
	// Client is the dialling side's configuration (certificate, roots,
	// VerifyConnection); ServerName is set to the host of each target.
	Client *tls.Config
	// Logger receives refused handshakes and bad frames (nil: none).
	Logger *slog.Logger
	// MaxFrame bounds a frame's payload (0: DefaultMaxFrame).
	MaxFrame int
	// HandshakeTimeout bounds a TLS handshake (0: 5 s).
	HandshakeTimeout time.Duration
	// Conns, if set, tracks every connection, accepted and dialled, once
	// its handshake succeeded, so a revoked peer's can be closed
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

// Name implements raftio.ITransport.
func (t *Transport) Name() string { return Name }

// Start listens on the NodeHost's listen (or Raft) address.
func (t *Transport) Start() error {
	if t.f.Server == nil || t.f.Client == nil {
		return errors.New("raftls: Factory needs both a Server and a Client TLS configuration")
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

// serve completes the handshake (refusing the connection if the identity
// check fails), then hands every frame on in order.
func (t *Transport) serve(nc net.Conn) {
	defer t.wg.Done()
	defer func() {
		nc.Close()
		t.mu.Lock()
		delete(t.conns, nc)
		t.mu.Unlock()
	}()
	tc := tls.Server(nc, t.f.Server)
	tc.SetDeadline(time.Now().Add(t.f.HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		t.logf("raft connection refused", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	tc.SetDeadline(time.Time{})
	defer t.f.Conns.Add(tc)()
	var hdr [headerSize]byte
	// refused: Dragonboat refused a chunk of this connection's snapshot
	// stream; the rest of the stream is read and dropped.
	refused := false
	for {
		kind, payload, err := readFrame(tc, hdr[:], t.f.MaxFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.logf("raft connection dropped", "remote", nc.RemoteAddr().String(), "err", err)
			}
			return
		}
		switch kind {
		case kindBatch:
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
			var c pb.Chunk
			if err := c.Unmarshal(payload); err != nil {
				t.logf("raft connection dropped: bad snapshot chunk", "remote", nc.RemoteAddr().String(), "err", err)
				return
			}
			if !t.onChunk(c) {
				// Keep the connection (see the package comment): tell
				// the sender to stop and drop what it already sent.
				refused = true
				tc.SetWriteDeadline(time.Now().Add(t.f.HandshakeTimeout))
				if _, err := tc.Write([]byte{kindRefused}); err != nil {
					return
				}
			}
		case kindClose:
			tc.SetWriteDeadline(time.Now().Add(t.f.HandshakeTimeout))
			tc.Write([]byte{kindClose})
			return
		}
	}
}

// readFrame reads one frame; hdr is a headerSize scratch buffer.
func readFrame(r io.Reader, hdr []byte, maxFrame int) (byte, []byte, error) {
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, nil, err
	}
	if hdr[0] != magic[0] || hdr[1] != magic[1] {
		return 0, nil, fmt.Errorf("%w: magic %x", ErrBadFrame, hdr[:2])
	}
	kind := hdr[2]
	if kind < kindBatch || kind > kindClose {
		return 0, nil, fmt.Errorf("%w: kind %d", ErrBadFrame, kind)
	}
	n := binary.BigEndian.Uint32(hdr[3:7])
	if int64(n) > int64(maxFrame) {
		return 0, nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadFrame, n, maxFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("%w: short payload: %v", ErrBadFrame, err)
	}
	if crc32.Checksum(payload, crcTab) != binary.BigEndian.Uint32(hdr[7:11]) {
		return 0, nil, fmt.Errorf("%w: checksum mismatch", ErrBadFrame)
	}
	return kind, payload, nil
}

// appendFrame appends a frame of kind around payload to dst.
func appendFrame(dst []byte, kind byte, payload []byte) []byte {
	dst = append(dst, magic[0], magic[1], kind)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.BigEndian.AppendUint32(dst, crc32.Checksum(payload, crcTab))
	return append(dst, payload...)
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

// dial connects to target and completes a handshake that checks the
// target's identity (t.f.Client.VerifyConnection) and its name (the host
// of target, as Dragonboat's own transport does).
func (t *Transport) dial(ctx context.Context, target string) (*tls.Conn, error) {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("raftls: target %q: %w", target, err)
	}
	cfg := t.f.Client.Clone()
	cfg.ServerName = host
	dctx, cancel := context.WithTimeout(ctx, t.f.HandshakeTimeout)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(dctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("raftls: dial %s: %w", target, err)
	}
	return nc.(*tls.Conn), nil
}

// writeTimeout bounds one frame's write: a peer that stops reading does
// not hold Dragonboat's sender forever.
const writeTimeout = 30 * time.Second

// GetConnection implements raftio.ITransport.
func (t *Transport) GetConnection(ctx context.Context, target string) (raftio.IConnection, error) {
	c, err := t.dial(ctx, target)
	if err != nil {
		return nil, err
	}
	return &conn{c: c, untrack: t.f.Conns.Add(c)}, nil
}

// GetSnapshotConnection implements raftio.ITransport.
func (t *Transport) GetSnapshotConnection(ctx context.Context, target string) (raftio.ISnapshotConnection, error) {
	c, err := t.dial(ctx, target)
	if err != nil {
		return nil, err
	}
	sc := &snapConn{conn: conn{c: c, untrack: t.f.Conns.Add(c)}, done: make(chan struct{})}
	go sc.readReplies()
	return sc, nil
}

// conn sends message batches; Dragonboat uses each from one goroutine.
type conn struct {
	c       *tls.Conn
	buf     []byte
	untrack func() // removes c from Factory.Conns
}

var _ raftio.IConnection = (*conn)(nil)

func (c *conn) send(kind byte, payload []byte) error {
	c.buf = appendFrame(c.buf[:0], kind, payload)
	c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := c.c.Write(c.buf)
	if cap(c.buf) > 1<<20 {
		c.buf = nil // do not keep a large batch's buffer
	}
	return err
}

// SendMessageBatch implements raftio.IConnection.
func (c *conn) SendMessageBatch(b pb.MessageBatch) error {
	data, err := b.Marshal()
	if err != nil {
		return fmt.Errorf("raftls: marshal message batch: %w", err)
	}
	return c.send(kindBatch, data)
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
	data, err := ch.Marshal()
	if err != nil {
		return fmt.Errorf("raftls: marshal snapshot chunk: %w", err)
	}
	return c.send(kindChunk, data)
}

// Close sends the close frame and waits (bounded) for the receiver's
// acknowledgement, so every chunk sent was handed on before the socket
// closes.
func (c *snapConn) Close() {
	if c.send(kindClose, nil) == nil {
		select {
		case <-c.done:
		case <-time.After(writeTimeout):
		}
	}
	c.c.Close()
	<-c.done
	c.untrack()
}
