package jepsen

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcCluster runs each node as a `dialkv node` child process on loopback,
// with its data directory under Dir. It can kill, restart, pause and resume
// nodes; it cannot partition them (Isolate returns ErrUnsupported): every
// node shares the host's loopback interface.
type ProcCluster struct {
	spec    Spec
	dir     string
	names   []string
	addrs   map[string]string
	args    map[string][]string
	mu      sync.Mutex
	cmds    map[string]*exec.Cmd
	done    map[string]chan struct{}
	paused  map[string]bool
	raft    []string          // each node's Raft (Dragonboat) address, for raft namespaces
	gossip  []string          // the members' gossip addresses (peer port + 2), for Join
	admins  map[string]string // each node's admin API (clock faults)
	running map[string]string // the binary each node was last started from
	cleanup bool
}

var _ Cluster = (*ProcCluster)(nil)

// StartProcCluster starts spec.Nodes processes. dir holds the data
// directories and logs; "" makes a temporary directory removed by Close.
func StartProcCluster(spec Spec, dir string) (*ProcCluster, error) {
	spec.fill()
	if spec.Binary == "" {
		return nil, errors.New("jepsen: Spec.Binary is required for the process backend")
	}
	c := &ProcCluster{spec: spec, dir: dir, names: nodeNames(spec.Nodes), addrs: map[string]string{},
		args: map[string][]string{}, admins: map[string]string{}, running: map[string]string{}, cmds: map[string]*exec.Cmd{}, done: map[string]chan struct{}{}, paused: map[string]bool{}}
	if dir == "" {
		d, err := os.MkdirTemp("", "dialkv-jepsen-")
		if err != nil {
			return nil, fmt.Errorf("jepsen: %w", err)
		}
		c.dir, c.cleanup = d, true
	}
	ports, err := FreePorts(4 * spec.Nodes)
	if err != nil {
		return nil, err
	}
	for i := range c.names {
		c.raft = append(c.raft, fmt.Sprintf("127.0.0.1:%d", ports[2*spec.Nodes+i]))
	}
	var peers []string
	for i, n := range c.names {
		c.addrs[n] = fmt.Sprintf("127.0.0.1:%d", ports[2*i])
		c.admins[n] = fmt.Sprintf("127.0.0.1:%d", ports[3*spec.Nodes+i])
		peers = append(peers, fmt.Sprintf("%s=%s@127.0.0.1:%d", n, c.addrs[n], ports[2*i+1]))
		c.gossip = append(c.gossip, fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]+2)) // dialkv node's default --gossip
	}
	for _, n := range c.names {
		a := []string{"node", "--id", n, "--listen", c.addrs[n], "--data", filepath.Join(c.dir, n),
			"--fsync", spec.Fsync, "--log-level", "warn", "--admin", c.admins[n]}
		if spec.Nodes > 1 {
			a = append(a, "--cluster", "jepsen", "--peers", strings.Join(peers, ","))
		}
		c.args[n] = append(a, spec.Extra...)
	}
	for _, n := range c.names {
		if err := c.Start(n); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Join starts node n as a non-member: `dialkv node --join` with the
// members' gossip addresses, its own client, peer, gossip and admin
// addresses. It answers as a proxy and opens the replicated namespaces;
// `dialkv admin add-node n` makes it a member. It returns once the node
// accepts connections; from then on it is one of Nodes (Kill, Start and
// the others work on it).
func (c *ProcCluster) Join(n string) error {
	c.mu.Lock()
	if _, ok := c.addrs[n]; ok {
		c.mu.Unlock()
		return fmt.Errorf("jepsen: join %s: already a node", n)
	}
	c.mu.Unlock()
	ports, err := FreePorts(4)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.names = append(c.names, n)
	c.addrs[n] = fmt.Sprintf("127.0.0.1:%d", ports[0])
	c.admins[n] = fmt.Sprintf("127.0.0.1:%d", ports[3])
	a := []string{"node", "--id", n, "--listen", c.addrs[n], "--data", filepath.Join(c.dir, n),
		"--fsync", c.spec.Fsync, "--log-level", "warn", "--admin", c.admins[n], "--cluster", "jepsen",
		"--peer-listen", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--gossip", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--raft-listen", "off", "--join", strings.Join(c.gossip, ",")}
	c.args[n] = append(a, c.spec.Extra...)
	c.mu.Unlock()
	return c.Start(n)
}

// SetBinary makes every later Start run bin: with a rolling restart
// (FaultRestart, RoundRobin) that is a rolling upgrade.
func (c *ProcCluster) SetBinary(bin string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spec.Binary = bin
}

// RunningBinary returns the binary node n was last started from.
func (c *ProcCluster) RunningBinary(n string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running[n]
}

// RaftParams implements RaftCluster.
func (c *ProcCluster) RaftParams() map[string]string {
	clients := make([]string, len(c.names))
	for i, n := range c.names {
		clients[i] = c.addrs[n]
	}
	return map[string]string{"nodes": strings.Join(c.names, ","), "raft-addrs": strings.Join(c.raft, ","),
		"client-addrs": strings.Join(clients, ","), "rtt": "10ms"}
}

var _ RaftCluster = (*ProcCluster)(nil)

// Dir returns the directory holding the nodes' data and logs.
func (c *ProcCluster) Dir() string { return c.dir }

// Nodes implements Cluster.
func (c *ProcCluster) Nodes() []string { return append([]string(nil), c.names...) }

// Addr implements Cluster.
func (c *ProcCluster) Addr(n string) string { return c.addrs[n] }

// Start implements Cluster: it returns once the node accepts connections.
func (c *ProcCluster) Start(n string) error {
	c.mu.Lock()
	if _, ok := c.cmds[n]; ok {
		c.mu.Unlock()
		return fmt.Errorf("jepsen: start %s: already running", n)
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, n+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("jepsen: start %s: %w", n, err)
	}
	cmd := exec.Command(c.spec.Binary, c.args[n]...)
	c.running[n] = c.spec.Binary
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.mu.Unlock()
		return fmt.Errorf("jepsen: start %s: %w", n, err)
	}
	done := make(chan struct{})
	c.cmds[n], c.done[n] = cmd, done
	c.paused[n] = false
	c.mu.Unlock()
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	if err := waitListening(c.addrs[n], done, 30*time.Second); err != nil {
		return fmt.Errorf("%w; the end of %s's log: %s", err, n, logTail(filepath.Join(c.dir, n+".log"), 600))
	}
	return nil
}

// logTail is the last max bytes of the file at path, for error messages
// (a node that exits at start says why in its log).
func logTail(path string, max int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if int64(len(b)) > max {
		b = b[int64(len(b))-max:]
	}
	return strings.TrimSpace(string(b))
}

// waitListening waits until addr accepts a TCP connection.
func waitListening(addr string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("jepsen: node at %s exited before listening", addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("jepsen: node at %s not listening after %v: %w", addr, limit, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *ProcCluster) signal(n string, sig syscall.Signal) (*exec.Cmd, chan struct{}, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd, ok := c.cmds[n]
	if !ok {
		return nil, nil, fmt.Errorf("jepsen: %s is not running", n)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return nil, nil, fmt.Errorf("jepsen: signal %v to %s: %w", sig, n, err)
	}
	return cmd, c.done[n], nil
}

// Kill implements Cluster: SIGKILL, then it waits for the process to exit.
func (c *ProcCluster) Kill(n string) error { return c.end(n, syscall.SIGKILL) }

// Stop implements Cluster: SIGTERM, then it waits for the exit.
func (c *ProcCluster) Stop(n string) error { return c.end(n, syscall.SIGTERM) }

// end sends sig to n's process, waits for it to exit and forgets it.
func (c *ProcCluster) end(n string, sig syscall.Signal) error {
	_, done, err := c.signal(n, sig)
	if err != nil {
		return err
	}
	<-done
	c.mu.Lock()
	delete(c.cmds, n)
	delete(c.done, n)
	c.paused[n] = false
	c.mu.Unlock()
	return nil
}

// Pause implements Cluster (SIGSTOP).
func (c *ProcCluster) Pause(n string) error {
	_, _, err := c.signal(n, syscall.SIGSTOP)
	if err == nil {
		c.mu.Lock()
		c.paused[n] = true
		c.mu.Unlock()
	}
	return err
}

// Resume implements Cluster (SIGCONT).
func (c *ProcCluster) Resume(n string) error {
	_, _, err := c.signal(n, syscall.SIGCONT)
	if err == nil {
		c.mu.Lock()
		c.paused[n] = false
		c.mu.Unlock()
	}
	return err
}

// Isolate implements Cluster: not supported by processes on one loopback.
func (c *ProcCluster) Isolate(string) error {
	return fmt.Errorf("jepsen: isolate: %w (processes share loopback; use --backend docker)", ErrUnsupported)
}

// Heal implements Cluster.
func (c *ProcCluster) Heal(string) error {
	return fmt.Errorf("jepsen: heal: %w", ErrUnsupported)
}

// Logs implements Cluster.
func (c *ProcCluster) Logs(n string) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, n+".log"))
	return string(b)
}

// Close implements Cluster: SIGCONT and SIGTERM to every node, SIGKILL
// after 10 s, then removes the directory if Start made it.
func (c *ProcCluster) Close() error {
	c.mu.Lock()
	var dones []chan struct{}
	var cmds []*exec.Cmd
	for n, cmd := range c.cmds {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Signal(syscall.SIGTERM)
		dones = append(dones, c.done[n])
		cmds = append(cmds, cmd)
	}
	c.cmds, c.done = map[string]*exec.Cmd{}, map[string]chan struct{}{}
	c.mu.Unlock()
	for i, d := range dones {
		select {
		case <-d:
		case <-time.After(10 * time.Second):
			cmds[i].Process.Kill()
			<-d
		}
	}
	if c.cleanup {
		if err := os.RemoveAll(c.dir); err != nil {
			return fmt.Errorf("jepsen: remove %s: %w", c.dir, err)
		}
	}
	return nil
}
