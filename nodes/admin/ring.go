package admin

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/transport"
)

// ringCmd is `dialkv admin ring`: a node's member list and, per quorum
// namespace, its replica's ring version and pending handoff.
func ringCmd(args []string, stdout, stderr io.Writer) error {
	fs := flags("ring", "[--addr HOST:PORT]", stdout)
	addr := fs.String("addr", "127.0.0.1:7379", "a node's client API address")
	cf := connFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	dopts, err := dialOptions(cf)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := nodes.RingAt(ctx, *addr, dopts)
	if err != nil {
		return err
	}
	m := rep.Membership
	fmt.Fprintf(stdout, "member list at %s: version %d, %s\n", rep.Node, m.Version, m.Phase)
	for _, p := range m.Members {
		fmt.Fprintf(stdout, "  %-8s client=%s peer=%s\n", p.ID, p.Client, p.Peer)
	}
	if len(m.Prev) > 0 {
		fmt.Fprintf(stdout, "changing from: %s\n", nodes.FormatPeers(m.Prev))
	}
	var names []string
	for n := range rep.Namespaces {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		st := rep.Namespaces[n]
		if st.Strategy == "causal" {
			state := "serving"
			if st.Paused {
				state = "paused"
			}
			fmt.Fprintf(stdout, "namespace %s (causal, %s): member list version %d, handoff %d unacknowledged, %d in progress, %d pushes acknowledged\n",
				n, state, st.Version, st.Queued, st.Inflight, st.Moved)
			continue
		}
		fmt.Fprintf(stdout, "namespace %s: ring version %d, handoff %d queued, %d in flight, %d hints, %d pushes acknowledged\n",
			n, st.Version, st.Queued, st.Inflight, st.Hints, st.Moved)
	}
	return nil
}

// ringChangeFlags are the flags add-node and remove-node share: the member
// to send the change to, the bound on the whole change, the settle pause,
// and the credentials (with authentication on, CLUSTER RING SET needs admin
// on the whole cluster: an admin of "*" or a node certificate).
func ringChangeFlags(name, operand string, stdout io.Writer) (fs *flag.FlagSet, addr *string, timeout, settle *time.Duration, cf *transport.ConnFlags) {
	fs = flags(name, operand+" [--addr HOST:PORT] [--timeout 10m] [credentials]", stdout)
	addr = fs.String("addr", "127.0.0.1:7379", "a member's client API address")
	timeout = fs.Duration("timeout", 10*time.Minute, "bound on the whole change (a change cut short is resumed by running the command again)")
	settle = fs.Duration("settle", 2*time.Second, "pause between the joint phase and the stream (longer than the namespaces' request timeout); skipped when every ring namespace is causal")
	return fs, addr, timeout, settle, connFlags(fs)
}

// addNode is `dialkv admin add-node ID[=CLIENT@PEER]`.
func addNode(args []string, stdout, stderr io.Writer) error {
	fs, addr, timeout, settle, cf := ringChangeFlags("add-node", "ID[=CLIENT@PEER]", stdout)
	region := fs.String("region", "", "the new node's region in the causal namespaces whose regions parameter does not name it (needed when they have one; docs/causal.md, \"Membership\")")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("add-node ID[=CLIENT@PEER]")
	}
	dopts, err := dialOptions(cf)
	if err != nil {
		return err
	}
	p, err := nodeToAdd(pos[0], *addr, dopts)
	if err != nil {
		return err
	}
	p.Region = *region
	return runChange(*addr, dopts, nodes.RingChange{Add: &p, Settle: *settle}, *timeout, stdout)
}

// removeNode is `dialkv admin remove-node ID`.
func removeNode(args []string, stdout, stderr io.Writer) error {
	fs, addr, timeout, settle, cf := ringChangeFlags("remove-node", "ID", stdout)
	down := fs.Bool("down", false, "the node is down for good: remove it without waiting for it; its quorum keys are handed off from the other replicas' copies and its causal keys seeded from the other regions (refused if it answers, or for a causal namespace with a single region: no other copy)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("remove-node ID")
	}
	dopts, err := dialOptions(cf)
	if err != nil {
		return err
	}
	return runChange(*addr, dopts, nodes.RingChange{Remove: pos[0], Down: *down, Settle: *settle}, *timeout, stdout)
}

func runChange(addr string, dopts transport.DialOptions, ch nodes.RingChange, timeout time.Duration, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last := time.Time{}
	ch.Log = func(f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		// Progress lines at most once a second.
		if strings.HasPrefix(line, "handoff:") && time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		fmt.Fprintf(stdout, "%s %s\n", time.Now().UTC().Format("15:04:05"), line)
	}
	res, err := nodes.ChangeRing(ctx, addr, dopts, ch)
	if err != nil {
		return err
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = " (load average " + strings.Join(strings.Fields(string(b))[:3], " ") + ")"
	}
	fmt.Fprintf(stdout, "member list version %d -> %d: %s\nhandoff: %d pushes acknowledged, %d copies offered and not sent, %d bytes, in %v; change took %v%s\n",
		res.From.Version, res.To.Version, nodes.FormatPeers(res.To.Members), res.Moved, res.Offered, res.Bytes,
		res.Stream.Round(time.Millisecond), res.Total.Round(time.Millisecond), load)
	if res.CausalPause > 0 {
		fmt.Fprintf(stdout, "causal namespaces refused the keys that moved for %v\n", res.CausalPause.Round(time.Millisecond))
	}
	return nil
}

// nodeToAdd parses ID=CLIENT@PEER, or looks a bare ID up in the gossip
// view (CLUSTER MEMBERS) of the member at addr: a node started with
// --join advertises its addresses there.
func nodeToAdd(arg, addr string, dopts transport.DialOptions) (nodes.ClusterPeer, error) {
	if strings.Contains(arg, "=") {
		ps, err := nodes.ParsePeers(arg)
		if err != nil {
			return nodes.ClusterPeer{}, usageErr("%v", err)
		}
		return ps[0], nil
	}
	lines, err := clusterMembers(addr, 5*time.Second, dopts)
	if err != nil {
		return nodes.ClusterPeer{}, err
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 4 || f[0] != arg {
			continue
		}
		p := nodes.ClusterPeer{ID: arg}
		for _, kv := range f[2:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "client":
				p.Client = v
			case "peer":
				p.Peer = v
			}
		}
		if p.Client == "" || p.Peer == "" {
			return p, fmt.Errorf("%s is known to %s's gossip without its addresses; give ID=CLIENT@PEER", arg, addr)
		}
		return p, nil
	}
	return nodes.ClusterPeer{}, fmt.Errorf("%s is not in the gossip view of %s (start it with --join, or give ID=CLIENT@PEER)", arg, addr)
}
