package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

// TestConnAlive: an idle connection is alive while the other side keeps it
// open and quiet, and not once that side closed it or sent bytes nobody
// asked for (before the peek, Alive read with a deadline already past,
// which Go's poller answers without reading: every case was "alive"). A
// past deadline left by the last call must not matter (when Alive peeked
// through rc.Read it did: the poller answered "timeout" and Alive said
// false), and a TLS server's graceful close (close_notify, then FIN) is a
// close (with the peek alone, the alert looked like a waiting record).
func TestConnAlive(t *testing.T) {
	tests := []struct {
		name   string
		tls    bool
		client func(*Conn)    // what the client does to its idle end
		after  func(net.Conn) // what the server does to its end
		want   bool
	}{
		{"open and quiet", false, nil, func(net.Conn) {}, true},
		{"closed", false, nil, func(c net.Conn) { c.Close() }, false},
		{"unsolicited bytes", false, nil, func(c net.Conn) { c.Write([]byte{0, 0, 0, 1, 'x'}) }, false},
		{"deadline passed", false, pastDeadline, func(net.Conn) {}, true},
		{"tls open and quiet", true, nil, func(net.Conn) {}, true},
		{"tls deadline passed", true, pastDeadline, func(net.Conn) {}, true},
		{"tls closed", true, nil, func(c net.Conn) { c.Close() }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var (
				ln   net.Listener
				err  error
				opts DialOptions
			)
			if tc.tls {
				ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{testCert(t)}})
				opts.TLS = &tls.Config{InsecureSkipVerify: true}
			} else {
				ln, err = net.Listen("tcp", "127.0.0.1:0")
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				if tc, ok := c.(*tls.Conn); ok {
					if tc.Handshake() != nil {
						return
					}
				}
				accepted <- c
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, ln.Addr().String(), opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sc := <-accepted
			defer sc.Close()
			if tc.client != nil {
				tc.client(c)
			}
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

// pastDeadline leaves c as a pooled connection is left: with its last
// call's deadline set and already passed.
func pastDeadline(c *Conn) {
	c.SetDeadline(time.Now().Add(time.Millisecond))
	time.Sleep(20 * time.Millisecond)
}

// testCert is a self-signed certificate for 127.0.0.1.
func testCert(t *testing.T) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "alive"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}
