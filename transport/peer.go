package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	peer "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkvpeer"
)

// PeerMessage is one replication message between nodes, of one namespace.
// Body is opaque here: the strategy that sent it decodes it.
type PeerMessage struct {
	Namespace string
	From, To  string
	Body      []byte
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func bodyCRC(b []byte) int32 { return int32(crc32.Checksum(b, castagnoli)) }

// PeerStats count what a peer endpoint did.
type PeerStats struct {
	Delivered, Dropped, BadChecksum, Rejected, SendErrors int64
}

type peerCounters struct {
	delivered, dropped, badChecksum, rejected, sendErrors atomic.Int64
}

func (c *peerCounters) snapshot() PeerStats {
	return PeerStats{Delivered: c.delivered.Load(), Dropped: c.dropped.Load(), BadChecksum: c.badChecksum.Load(), Rejected: c.rejected.Load(), SendErrors: c.sendErrors.Load()}
}

// PeerServer receives replication messages from other nodes and hands each
// one whose checksum holds to the handler. The handler must not block.
type PeerServer struct {
	cluster string
	handle  func(PeerMessage)
	ln      net.Listener
	tls     *tls.Config
	// tlsConns tracks the TLS connections (PeerServerOptions.Conns).
	tlsConns *TLSConns
	log      *slog.Logger
	n        peerCounters
	done     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]bool
}

var _ peer.Peer = (*peerHandler)(nil)

type peerHandler struct{ s *PeerServer }

func (h *peerHandler) Deliver(_ context.Context, cluster string, msgs []*peer.PeerMessage) (int32, error) {
	s := h.s
	if cluster != s.cluster {
		s.n.rejected.Add(int64(len(msgs)))
		return 0, &peer.PeerError{Message: fmt.Sprintf("cluster %q is not this node's cluster %q", cluster, s.cluster)}
	}
	var ok int32
	for _, m := range msgs {
		if m == nil {
			continue
		}
		if bodyCRC(m.Body) != m.Crc32c {
			s.n.badChecksum.Add(1)
			s.log.Warn("peer message failed its checksum; dropped", "from", m.FromNode, "namespace", m.NamespaceName)
			continue
		}
		s.handle(PeerMessage{Namespace: m.NamespaceName, From: m.FromNode, To: m.ToNode, Body: m.Body})
		s.n.delivered.Add(1)
		ok++
	}
	return ok, nil
}

// PeerServerOptions configure a PeerServer. Zero values mean the defaults.
type PeerServerOptions struct {
	MaxFrame int // largest frame accepted; default DefaultMaxFrame
	Logger   *slog.Logger
	// TLS, if set, serves the peer API over TLS (nodes use mutual TLS:
	// security.PeerConfigs). A connection whose handshake fails is closed
	// and counted in PeerStats.Rejected.
	TLS *tls.Config
	// Conns, if set, tracks the connections whose TLS handshake
	// succeeded, so a revoked peer's can be closed (TLSConns.CloseIf).
	Conns *TLSConns
}

// ListenPeer serves the peer API on addr for the named cluster.
func ListenPeer(addr, cluster string, handle func(PeerMessage), o PeerServerOptions) (*PeerServer, error) {
	// Before any peer request is processed: a node starts its peer server
	// before its client server, and NewServer writing the thrift variable
	// while a peer request reads it let the generated processor see a
	// positive interval, then start a ticker with zero (a panic at start,
	// seen in a jepsen restart).
	disableConnectivityCheck()
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("transport: peer listen %s: %w", addr, err)
	}
	s := &PeerServer{cluster: cluster, handle: handle, ln: ln, tls: o.TLS, tlsConns: o.Conns, log: o.Logger, done: make(chan struct{}), conns: map[net.Conn]bool{}}
	cfg := &thrift.TConfiguration{MaxFrameSize: int32(o.MaxFrame)}
	proc := peer.NewPeerProcessor(&peerHandler{s})
	go s.accept(proc, cfg)
	return s, nil
}

// accept serves each connection on its own goroutine until Close.
func (s *PeerServer) accept(proc thrift.TProcessor, cfg *thrift.TConfiguration) {
	defer close(s.done)
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[nc] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
				nc.Close()
			}()
			conn := nc
			if s.tls != nil {
				tc := tls.Server(nc, s.tls)
				hctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := tc.HandshakeContext(hctx)
				cancel()
				if err != nil {
					s.n.rejected.Add(1)
					s.log.Warn("peer TLS handshake failed; connection refused", "remote", nc.RemoteAddr().String(), "err", err)
					return
				}
				conn = tc
				defer s.tlsConns.Add(tc)()
			}
			tr := thrift.NewTFramedTransportConf(thrift.NewTSocketFromConnConf(conn, cfg), cfg)
			prot := thrift.NewTBinaryProtocolConf(tr, cfg)
			for {
				// A malformed frame or call ends this connection only.
				if ok, err := proc.Process(context.Background(), prot, prot); err != nil || !ok {
					return
				}
			}
		}()
	}
}

// Addr is the address the server listens on.
func (s *PeerServer) Addr() string { return s.ln.Addr().String() }

// Stats returns the server's counters.
func (s *PeerServer) Stats() PeerStats { return s.n.snapshot() }

// Close stops the server and closes every peer connection.
func (s *PeerServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	<-s.done
	s.wg.Wait()
	return err
}

// PeerSender carries messages to one remote node: Send queues without
// blocking (a full queue drops, and the strategies retry), one goroutine
// sends batches over a framed Thrift connection and reconnects with
// exponential backoff and full jitter when the connection fails; Wake
// cuts a backoff short when the peer is known to be back.
type PeerSender struct {
	addr, cluster string
	o             PeerSenderOptions
	q             chan PeerMessage
	n             peerCounters
	wake          chan struct{}
	stop          chan struct{}
	done          chan struct{}
	closeOnce     sync.Once
}

// PeerSenderOptions configure a PeerSender. Zero values mean the defaults.
type PeerSenderOptions struct {
	Queue      int           // queued messages before Send drops; default 8192
	Batch      int           // messages per call; default 256
	Timeout    time.Duration // per call, and per dial; default 2s
	MinBackoff time.Duration // the first reconnect delay's bound, doubled per failure up to MaxBackoff; default 10ms
	MaxBackoff time.Duration // default 2s
	MaxFrame   int           // default DefaultMaxFrame
	Logger     *slog.Logger
	// Seed seeds the backoff jitter (0: from the address).
	Seed uint64
	// TLS, if set, dials the peer over TLS (security.PeerConfigs' client
	// side: the node certificate, verified both ways).
	TLS *tls.Config
	// Conns, if set, tracks the sender's TLS connection while it is open,
	// so a revoked peer's can be closed (TLSConns.CloseIf); the sender
	// then redials, and the handshake refuses the revoked certificate.
	Conns *TLSConns
}

// dialTLS connects to the peer and completes the TLS handshake within
// the sender's timeout. The server name checked is the host of addr,
// unless the configuration names one.
func (p *PeerSender) dialTLS() (*tls.Conn, error) {
	cfg := p.o.TLS
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(p.addr); err == nil {
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.o.Timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: p.o.Timeout}, Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	return nc.(*tls.Conn), nil
}

// NewPeerSender starts a sender to addr.
func NewPeerSender(addr, cluster string, o PeerSenderOptions) *PeerSender {
	if o.Queue <= 0 {
		o.Queue = 8192
	}
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 2 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = min(10*time.Millisecond, o.MaxBackoff)
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Seed == 0 {
		o.Seed = uint64(crc32.ChecksumIEEE([]byte(addr))) + 1
	}
	p := &PeerSender{addr: addr, cluster: cluster, o: o, q: make(chan PeerMessage, o.Queue), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

// Send queues m; false means it was dropped (queue full or sender closed).
func (p *PeerSender) Send(m PeerMessage) bool {
	select {
	case <-p.stop:
		p.n.dropped.Add(1)
		return false
	default:
	}
	select {
	case p.q <- m:
		return true
	default:
		p.n.dropped.Add(1)
		return false
	}
}

// Wake tells the sender that its peer is probably reachable again (it
// sent us something, or gossip saw it alive): a reconnect backoff under way
// ends now, and the next one starts from MinBackoff. Without it, a peer
// that restarts can wait up to MaxBackoff for our messages, longer than a
// request's timeout. It never blocks.
func (p *PeerSender) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Stats returns the sender's counters (Delivered: accepted by the peer).
func (p *PeerSender) Stats() PeerStats { return p.n.snapshot() }

// Close stops the sender; queued messages are dropped.
func (p *PeerSender) Close() error {
	p.closeOnce.Do(func() { close(p.stop) })
	<-p.done
	return nil
}

func (p *PeerSender) loop() {
	defer close(p.done)
	rnd := rand.New(rand.NewPCG(p.o.Seed, 0x5eed))
	var (
		trans   thrift.TTransport
		client  *peer.PeerClient
		untrack = func() {}
	)
	closeConn := func() {
		if trans != nil {
			trans.Close()
			untrack()
			trans, client, untrack = nil, nil, func() {}
		}
	}
	defer closeConn()
	backoff := p.o.MinBackoff
	batch := make([]*peer.PeerMessage, 0, p.o.Batch)
	for {
		batch = batch[:0]
		select {
		case <-p.stop:
			return
		case m := <-p.q:
			batch = append(batch, toWire(m))
		}
	fill:
		for len(batch) < p.o.Batch {
			select {
			case m := <-p.q:
				batch = append(batch, toWire(m))
			default:
				break fill
			}
		}
		if client == nil {
			// The framed transport propagates its configuration to the
			// socket, so the TLS settings must be in this one.
			cfg := &thrift.TConfiguration{MaxFrameSize: int32(p.o.MaxFrame), ConnectTimeout: p.o.Timeout, SocketTimeout: p.o.Timeout, TLSConfig: p.o.TLS}
			var sock thrift.TTransport = thrift.NewTSocketConf(p.addr, cfg)
			var err error
			if p.o.TLS != nil {
				// Dialled here rather than by thrift's TSSLSocket, so the
				// *tls.Conn can be tracked (PeerSenderOptions.Conns).
				var tc *tls.Conn
				if tc, err = p.dialTLS(); err == nil {
					untrack = p.o.Conns.Add(tc)
					sock = thrift.NewTSocketFromConnConf(tc, cfg)
				}
			}
			t := thrift.NewTFramedTransportConf(sock, cfg)
			if err == nil && p.o.TLS == nil {
				err = t.Open()
			}
			if err != nil {
				p.n.sendErrors.Add(1)
				p.n.dropped.Add(int64(len(batch)))
				// Full jitter: sleep uniformly in [0, backoff).
				sleep := time.Duration(rnd.Int64N(int64(backoff)))
				backoff = min(2*backoff, p.o.MaxBackoff)
				t := time.NewTimer(sleep)
				select {
				case <-p.stop:
					t.Stop()
					return
				case <-t.C:
				case <-p.wake:
					t.Stop()
					backoff = p.o.MinBackoff
				}
				continue
			}
			trans = t
			client = peer.NewPeerClientFactory(t, thrift.NewTBinaryProtocolFactoryConf(cfg))
			backoff = p.o.MinBackoff
		}
		ctx, cancel := context.WithTimeout(context.Background(), p.o.Timeout)
		n, err := client.Deliver(ctx, p.cluster, batch)
		cancel()
		if err != nil {
			var pe *peer.PeerError
			if errors.As(err, &pe) {
				p.n.rejected.Add(int64(len(batch)))
				p.o.Logger.Warn("peer rejected messages", "addr", p.addr, "err", pe.Message)
			} else {
				p.n.sendErrors.Add(1)
				p.n.dropped.Add(int64(len(batch)))
			}
			closeConn()
			continue
		}
		p.n.delivered.Add(int64(n))
		if dropped := int64(len(batch)) - int64(n); dropped > 0 {
			p.n.dropped.Add(dropped)
		}
	}
}

func toWire(m PeerMessage) *peer.PeerMessage {
	return &peer.PeerMessage{NamespaceName: m.Namespace, FromNode: m.From, ToNode: m.To, Body: m.Body, Crc32c: bodyCRC(m.Body)}
}
