package jepsen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DockerCluster runs each node as a container of an image built from
// deploy/Dockerfile, on a network of its own, with a named volume per node
// and its client port published on 127.0.0.1. Faults: docker kill -s KILL
// and docker start, -s STOP / -s CONT, docker network disconnect / connect.
// An isolated node is cut off from its peers and from the clients.
type DockerCluster struct {
	spec   Spec
	image  string
	prefix string
	net    string
	names  []string
	addrs  map[string]string
	admins map[string]string // each node's published admin API (clock faults)
}

var _ Cluster = (*DockerCluster)(nil)

// DockerAvailable returns nil when the docker command works and a daemon
// answers.
func DockerAvailable() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("jepsen: no docker command: %w", err)
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		return fmt.Errorf("jepsen: docker daemon not reachable: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("jepsen: docker %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// BuildImage builds the FROM scratch node image tag from deploy/Dockerfile
// (found under the module root) and the static binary bin, in a build
// context holding only those two files: nothing is pulled.
func BuildImage(bin, tag string) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	df, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
	if err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	ctx, err := os.MkdirTemp("", "dialkv-image-")
	if err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	defer os.RemoveAll(ctx)
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), df, 0o644); err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "dialkv"), b, 0o755); err != nil {
		return fmt.Errorf("jepsen: %w", err)
	}
	_, err = docker("build", "-q", "-t", tag, ctx)
	return err
}

// StartDockerCluster starts spec.Nodes containers of image; prefix names
// the containers (PREFIX-n1, ...), the network and the volumes.
func StartDockerCluster(spec Spec, image, prefix string) (*DockerCluster, error) {
	spec.fill()
	c := &DockerCluster{spec: spec, image: image, prefix: prefix, net: prefix + "-net", names: nodeNames(spec.Nodes), addrs: map[string]string{}, admins: map[string]string{}}
	c.Close() // leftovers of an earlier run with the same prefix
	if _, err := docker("network", "create", c.net); err != nil {
		return nil, err
	}
	ports, err := FreePorts(2 * spec.Nodes)
	if err != nil {
		c.Close()
		return nil, err
	}
	var peers []string
	for _, n := range c.names {
		peers = append(peers, n+"="+n+":7379@"+n+":7380")
	}
	for i, n := range c.names {
		c.addrs[n] = fmt.Sprintf("127.0.0.1:%d", ports[i])
		c.admins[n] = fmt.Sprintf("127.0.0.1:%d", ports[spec.Nodes+i])
		args := []string{"create", "--name", c.container(n), "--hostname", n, "--network", c.net, "--network-alias", n,
			"-p", c.addrs[n] + ":7379", "-p", c.admins[n] + ":9381", "-v", c.container(n) + "-data:/data", image,
			"node", "--id", n, "--listen", "0.0.0.0:7379", "--data", "/data", "--fsync", spec.Fsync, "--log-level", "warn",
			"--admin", "0.0.0.0:9381"}
		if spec.Nodes > 1 {
			args = append(args, "--cluster", "jepsen", "--peer-listen", "0.0.0.0:7380", "--peers", strings.Join(peers, ","))
		}
		args = append(args, spec.Extra...)
		if _, err := docker(args...); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, n := range c.names {
		if err := c.Start(n); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func (c *DockerCluster) container(n string) string { return c.prefix + "-" + n }

// Network returns the Docker network's name.
func (c *DockerCluster) Network() string { return c.net }

// Nodes implements Cluster.
func (c *DockerCluster) Nodes() []string { return append([]string(nil), c.names...) }

// Addr implements Cluster.
func (c *DockerCluster) Addr(n string) string { return c.addrs[n] }

// Start implements Cluster: docker start, then it waits until the
// published port answers (a connection through docker-proxy succeeds
// before the node listens, so it waits for a ping).
func (c *DockerCluster) Start(n string) error {
	if _, err := docker("start", c.container(n)); err != nil {
		return err
	}
	return waitPing(c.addrs[n], 30*time.Second)
}

// Kill implements Cluster.
func (c *DockerCluster) Kill(n string) error {
	_, err := docker("kill", "-s", "KILL", c.container(n))
	if err != nil {
		return err
	}
	// docker kill returns before the container is gone.
	_, err = docker("wait", c.container(n))
	return err
}

// Stop implements Cluster: docker stop (SIGTERM, SIGKILL after 15 s).
func (c *DockerCluster) Stop(n string) error {
	_, err := docker("stop", "-t", "15", c.container(n))
	return err
}

// Pause implements Cluster.
func (c *DockerCluster) Pause(n string) error {
	_, err := docker("kill", "-s", "STOP", c.container(n))
	return err
}

// Resume implements Cluster.
func (c *DockerCluster) Resume(n string) error {
	_, err := docker("kill", "-s", "CONT", c.container(n))
	return err
}

// Isolate implements Cluster: docker network disconnect.
func (c *DockerCluster) Isolate(n string) error {
	_, err := docker("network", "disconnect", c.net, c.container(n))
	return err
}

// Heal implements Cluster: docker network connect, with the node's alias.
func (c *DockerCluster) Heal(n string) error {
	_, err := docker("network", "connect", "--alias", n, c.net, c.container(n))
	return err
}

// Logs implements Cluster.
func (c *DockerCluster) Logs(n string) string {
	out, _ := docker("logs", c.container(n))
	return out
}

// Close implements Cluster: removes the containers, their volumes and the
// network.
func (c *DockerCluster) Close() error {
	var errs []error
	for _, n := range c.names {
		out, err := docker("rm", "-f", "-v", c.container(n))
		if err != nil && !strings.Contains(out, "No such container") {
			errs = append(errs, err)
		}
		out, err = docker("volume", "rm", "-f", c.container(n)+"-data")
		if err != nil && !strings.Contains(out, "no such volume") {
			errs = append(errs, err)
		}
	}
	out, err := docker("network", "rm", c.net)
	if err != nil && !strings.Contains(out, "not found") {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
