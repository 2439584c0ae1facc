// Package freeport picks loopback ports for tests, demos and experiments
// that start nodes on addresses they must know in advance (and reuse
// after a restart).
//
// Ports come from below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default). A port
// the kernel hands out for "127.0.0.1:0" comes from that range, and once it
// is released any outgoing connection on the machine may take it as its
// source port: a node started on it a moment later, or restarted on it
// after a stop, then fails with "address already in use". Tests running in
// parallel packages open thousands of outgoing connections, so this was a
// recurring CI flake (TestRollingRestart, the raft rebalancing tests,
// TestClusterBatchOnQuorum). Below the ephemeral range only a process that
// asks for the port by number can take it.
package freeport

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Ports returns n distinct ports free on 127.0.0.1 right now, for both
// TCP and UDP (memberlist gossip uses both on one port). Each is checked
// by listening on it; the listeners are closed before Ports returns.
func Ports(n int) ([]int, error) { return PortsOn("127.0.0.1", n) }

// PortsOn is Ports for another host address (as in "HOST:PORT").
func PortsOn(host string, n int) ([]int, error) {
	var held []io.Closer
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	lo, hi := 10000, ephemeralLow()
	if hi-lo < 1000 {
		lo = 1024
	}
	// Seeded per process and call so that test binaries running at the
	// same time (go test runs packages in parallel) pick different ports.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	out := make([]int, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n+100 {
			return nil, fmt.Errorf("freeport: no free port on %s in %d-%d after %d tries", host, lo, hi, tries)
		}
		p := lo + rng.IntN(hi-lo)
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			l.Close()
			continue
		}
		held = append(held, l, u)
		out = append(out, p)
	}
	return out, nil
}

// Addrs returns n distinct free "127.0.0.1:PORT" addresses (see Ports).
func Addrs(n int) ([]string, error) { return AddrsOn("127.0.0.1", n) }

// AddrsOn returns n distinct free "HOST:PORT" addresses (see Ports).
func AddrsOn(host string, n int) ([]string, error) {
	ports, err := PortsOn(host, n)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i, p := range ports {
		out[i] = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return out, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768
// where it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 1024 {
				return v
			}
		}
	}
	return 32768
}
