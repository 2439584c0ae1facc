// Package realnodes starts a cluster of `dialkv node` processes on loopback
// for the real-cluster experiments: node i listens on its own address
// IPPrefix+i (127.0.X.i) and, when UIDBase is set, runs under uid UIDBase+i
// so that experiments/internal/netcut can partition it from the others.
//
// Ports are the same on every node (they have distinct addresses): client
// Port, peer Port+1, gossip Port+3 (the peer port+2 default), raft Port+5.
package realnodes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/experiments/internal/netcut"
)

// Config describes a cluster.
type Config struct {
	Bin      string // dialkv binary (copied into Dir so that other uids can run it)
	Dir      string // working directory (data, logs); created
	N        int    // nodes n1..nN
	IPPrefix string // e.g. "127.0.31."; node i listens on IPPrefix+i
	Port     int    // client port; peer +1, gossip +3, raft +5
	UIDBase  int    // >0: node i runs as uid/gid UIDBase+i
	Cluster  string // cluster name
	Fsync    string // --fsync
	Extra    []string
}

// Node is one member.
type Node struct {
	ID, IP                 string
	UID                    int
	Client, Peer, RaftAddr string
	dir                    string
	joiner                 bool // started with --join, not --peers
	cmd                    *exec.Cmd
	done                   chan struct{}
}

// Host is the node as netcut sees it.
func (n *Node) Host() netcut.Host { return netcut.Host{UID: n.UID, IP: n.IP} }

// Cluster is a set of running nodes.
type Cluster struct {
	Cfg   Config
	Nodes []*Node
	bin   string
}

// Start starts every node and waits until each answers PING.
func Start(cfg Config) (*Cluster, error) {
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("realnodes: %w", err)
	}
	if err := os.Chmod(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("realnodes: %w", err)
	}
	bin := filepath.Join(cfg.Dir, "dialkv")
	if err := copyFile(cfg.Bin, bin); err != nil {
		return nil, fmt.Errorf("realnodes: copy binary: %w", err)
	}
	c := &Cluster{Cfg: cfg, bin: bin}
	for i := 1; i <= cfg.N; i++ {
		ip := fmt.Sprintf("%s%d", cfg.IPPrefix, i)
		n := &Node{ID: fmt.Sprintf("n%d", i), IP: ip,
			Client: fmt.Sprintf("%s:%d", ip, cfg.Port), Peer: fmt.Sprintf("%s:%d", ip, cfg.Port+1),
			RaftAddr: fmt.Sprintf("%s:%d", ip, cfg.Port+5), dir: filepath.Join(cfg.Dir, fmt.Sprintf("n%d", i))}
		if cfg.UIDBase > 0 {
			n.UID = cfg.UIDBase + i
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := c.startNode(n); err != nil {
			c.Stop()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, n := range c.Nodes {
		if err := waitPing(ctx, n.Client); err != nil {
			c.Stop()
			return nil, fmt.Errorf("realnodes: %s: %w (log %s)", n.ID, err, filepath.Join(cfg.Dir, n.ID+".log"))
		}
	}
	return c, nil
}

// PeersFlag is the --peers value of the initial members: n1=CLIENT@PEER,...
func (c *Cluster) PeersFlag() string {
	var ps []string
	for _, n := range c.Nodes {
		if !n.joiner {
			ps = append(ps, n.ID+"="+n.Client+"@"+n.Peer)
		}
	}
	return strings.Join(ps, ",")
}

// Addrs lists the nodes' client addresses.
func (c *Cluster) Addrs() []string {
	var as []string
	for _, n := range c.Nodes {
		as = append(as, n.Client)
	}
	return as
}

// RaftParams are the namespace parameters naming every node's raft and
// client address (NAMESPACE CREATE ... raft).
func (c *Cluster) RaftParams() map[string]string {
	var ids, raft []string
	for _, n := range c.Nodes {
		ids, raft = append(ids, n.ID), append(raft, n.RaftAddr)
	}
	return map[string]string{"nodes": strings.Join(ids, ","), "raft-addrs": strings.Join(raft, ","),
		"client-addrs": strings.Join(c.Addrs(), ",")}
}

// Join starts one more node, n(N+1), that knows only the first node's
// gossip address (--join): it is not a member of the ring until an admin
// adds it (nodes.ChangeRing), and serves as a proxy meanwhile. It returns
// once the node answers PING.
func (c *Cluster) Join() (*Node, error) {
	i := len(c.Nodes) + 1
	ip := fmt.Sprintf("%s%d", c.Cfg.IPPrefix, i)
	n := &Node{ID: fmt.Sprintf("n%d", i), IP: ip,
		Client: fmt.Sprintf("%s:%d", ip, c.Cfg.Port), Peer: fmt.Sprintf("%s:%d", ip, c.Cfg.Port+1),
		RaftAddr: fmt.Sprintf("%s:%d", ip, c.Cfg.Port+5), dir: filepath.Join(c.Cfg.Dir, fmt.Sprintf("n%d", i)), joiner: true}
	if c.Cfg.UIDBase > 0 {
		n.UID = c.Cfg.UIDBase + i
	}
	c.Nodes = append(c.Nodes, n)
	if err := c.startNode(n); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := waitPing(ctx, n.Client); err != nil {
		return nil, fmt.Errorf("realnodes: %s: %w", n.ID, err)
	}
	return n, nil
}

// StopNode terminates one node (SIGTERM, then SIGKILL after 5 s).
func (c *Cluster) StopNode(n *Node) {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(5 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	n.cmd = nil
}

func (c *Cluster) startNode(n *Node) error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return fmt.Errorf("realnodes: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(c.Cfg.Dir, n.ID+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("realnodes: %w", err)
	}
	if n.UID > 0 {
		if err := os.Chown(n.dir, n.UID, n.UID); err != nil {
			logf.Close()
			return fmt.Errorf("realnodes: %w", err)
		}
	}
	args := []string{"node", "--id", n.ID, "--listen", n.Client, "--data", n.dir, "--fsync", c.Cfg.Fsync,
		"--cluster", c.Cfg.Cluster, "--log-level", "warn"}
	if n.joiner {
		args = append(args, "--peer-listen", n.Peer, "--join", fmt.Sprintf("%s:%d", c.Nodes[0].IP, c.Cfg.Port+3))
	} else {
		args = append(args, "--peers", c.PeersFlag())
	}
	args = append(args, c.Cfg.Extra...)
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: the node dies with the experiment even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if n.UID > 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(n.UID), Gid: uint32(n.UID)}
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("realnodes: start %s: %w", n.ID, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(n.done) }()
	return nil
}

// Stop terminates every node (SIGTERM, then SIGKILL after 5 s) and waits.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		if n.cmd != nil {
			_ = n.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		select {
		case <-n.done:
		case <-time.After(5 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		n.cmd = nil
	}
}

// CanReach runs `dialkv cli PING` against to's client address as from's
// uid: it reports whether from's process could reach to now (it checks a
// partition is in force, or healed).
func (c *Cluster) CanReach(from, to *Node) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, "cli", "--addr", to.Client, "--timeout", "1s", "PING")
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if from.UID > 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(from.UID), Gid: uint32(from.UID)}
	}
	out, err := cmd.CombinedOutput()
	return err == nil && strings.Contains(string(out), "PONG")
}

func waitPing(ctx context.Context, addr string) error {
	var last error
	for {
		cl, err := client.New([]string{addr}, client.WithTimeout(time.Second), client.WithCircuitBreaker(0, 0))
		if err == nil {
			_, err = cl.NewSession("").Ping(ctx)
			cl.Close()
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
