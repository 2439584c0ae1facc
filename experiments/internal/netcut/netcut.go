// Package netcut partitions processes on one machine with iptables: each
// process runs under its own user id and listens on its own loopback
// address (127.0.X.Y), and a partition is a set of DROP rules in the OUTPUT
// chain matching the sending socket's owner (iptables' owner match) and the
// destination address. Matching on the owner, not the source address,
// separates the processes whatever source address their outgoing
// connections pick (Linux gives a connection to 127.0.X.Y the source
// 127.0.0.1 unless the socket is bound), so no process has to bind its
// dialers.
//
// The rules live in a chain of their own, reached from OUTPUT only for the
// uid range of the experiment's processes, so other processes on the machine
// are never matched. It needs root and iptables with the owner match; New
// returns ErrUnsupported otherwise, for the caller to skip.
package netcut

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// ErrUnsupported: partitions cannot be made here (not root, no iptables,
// no owner match).
var ErrUnsupported = errors.New("netcut: unsupported")

// Host is one process: the uid it runs under and the address it listens on.
type Host struct {
	UID int
	IP  string
}

// Cutter owns one iptables chain.
type Cutter struct {
	chain        string
	uidLo, uidHi int
	run          func(args ...string) error
}

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// New creates chain (removing a leftover of the same name first) and jumps
// to it from OUTPUT for packets of sockets owned by uids uidLo..uidHi. It
// checks that an owner-match rule is accepted.
func New(chain string, uidLo, uidHi int) (*Cutter, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: needs root (iptables)", ErrUnsupported)
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, fmt.Errorf("%w: no iptables on PATH", ErrUnsupported)
	}
	c := &Cutter{chain: chain, uidLo: uidLo, uidHi: uidHi, run: iptables}
	c.remove()
	if err := c.run("-N", chain); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	if err := c.run(c.jump("-I")...); err != nil {
		c.remove()
		return nil, fmt.Errorf("%w: owner match: %v", ErrUnsupported, err)
	}
	return c, nil
}

func (c *Cutter) jump(op string) []string {
	return []string{op, "OUTPUT", "-m", "owner", "--uid-owner", fmt.Sprintf("%d-%d", c.uidLo, c.uidHi), "-j", c.chain}
}

// remove deletes the jump and the chain, ignoring errors (they may not exist).
func (c *Cutter) remove() {
	for c.run(c.jump("-D")...) == nil {
	}
	_ = c.run("-F", c.chain)
	_ = c.run("-X", c.chain)
}

// Rules returns the iptables rule specifications (after "-A CHAIN") that
// cut every link between hosts of different groups, both directions: a
// packet sent by a socket of one group's uid to another group's address is
// dropped.
func Rules(groups [][]Host) [][]string {
	var rules [][]string
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, from := range g {
				for _, to := range h {
					rules = append(rules, []string{"-m", "owner", "--uid-owner", strconv.Itoa(from.UID), "-d", to.IP, "-j", "DROP"})
				}
			}
		}
	}
	return rules
}

// Partition replaces the current rules with those separating groups.
func (c *Cutter) Partition(groups [][]Host) error {
	if err := c.Heal(); err != nil {
		return err
	}
	for _, r := range Rules(groups) {
		if err := c.run(append([]string{"-A", c.chain}, r...)...); err != nil {
			return fmt.Errorf("netcut: partition: %w", err)
		}
	}
	return nil
}

// Heal removes every rule: all links are up again.
func (c *Cutter) Heal() error {
	if err := c.run("-F", c.chain); err != nil {
		return fmt.Errorf("netcut: heal: %w", err)
	}
	return nil
}

// Close removes the chain and its jump.
func (c *Cutter) Close() { c.remove() }
