package jepsen

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/dialkv/dialkv/internal/freeport"
)

// ErrUnsupported is returned by a Cluster for a fault it cannot inject.
var ErrUnsupported = errors.New("jepsen: fault not supported by this cluster backend")

// Cluster is a set of dialkv nodes that faults can be injected into. Node
// names are n1..nN.
type Cluster interface {
	// Nodes returns the node names.
	Nodes() []string
	// Addr returns a node's client API address as seen from this process.
	Addr(node string) string
	// Kill sends SIGKILL to the node (kill -9); Start starts it again on
	// the same data directory and addresses.
	Kill(node string) error
	Start(node string) error
	// Stop shuts the node down gracefully (SIGTERM) and waits for it.
	Stop(node string) error
	// Pause sends SIGSTOP, Resume SIGCONT.
	Pause(node string) error
	Resume(node string) error
	// Isolate cuts the node off the network (from peers and clients);
	// Heal reconnects it. ErrUnsupported where the backend cannot.
	Isolate(node string) error
	Heal(node string) error
	// Logs returns the node's output so far (for reports).
	Logs(node string) string
	// Close stops every node and removes what the cluster created.
	Close() error
}

// RaftCluster is a Cluster that knows the parameters a raft namespace
// needs on it (every node's Raft and client address).
type RaftCluster interface {
	RaftParams() map[string]string
}

// Spec says what cluster to start.
type Spec struct {
	Nodes  int    // number of nodes (1: a single node without --peers)
	Fsync  string // --fsync (default always)
	Binary string // the dialkv binary (process backend; docker: put in the image)
	// Extra flags for every node.
	Extra []string
}

func (s *Spec) fill() {
	if s.Nodes <= 0 {
		s.Nodes = 3
	}
	if s.Fsync == "" {
		s.Fsync = "always"
	}
}

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i+1)
	}
	return out
}

// FreePorts returns n ports free on 127.0.0.1 right now, below the
// kernel's ephemeral range (see package internal/freeport for why).
func FreePorts(n int) ([]int, error) {
	ports, err := freeport.Ports(n)
	if err != nil {
		return nil, fmt.Errorf("jepsen: %w", err)
	}
	return ports, nil
}

// ModuleRoot returns the directory of the dialkv go.mod, searching upwards
// from the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("jepsen: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/dialkv/dialkv\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("jepsen: not inside the dialkv module (no go.mod found)")
		}
		dir = parent
	}
}

var buildMu sync.Mutex

// Binary returns a static dialkv binary: $DIALKV_BIN when set, else one
// built with `CGO_ENABLED=0 go build` into dir (the module root is found
// from the working directory).
func Binary(dir string) (string, error) {
	if b := os.Getenv("DIALKV_BIN"); b != "" {
		if _, err := os.Stat(b); err != nil {
			return "", fmt.Errorf("jepsen: DIALKV_BIN: %w", err)
		}
		return filepath.Abs(b)
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "dialkv")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/dialkv")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("jepsen: go build: %w: %s", err, b)
	}
	return out, nil
}
