package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/transport"
)

// raftNamespace reads a raft namespace's spec at addr and returns its
// node list (from its parameters) and retired nodes.
func raftNamespace(addr, ns string, dopts transport.DialOptions) (raft.Config, error) {
	c, err := dial(addr, 10*time.Second, dopts)
	if err != nil {
		return raft.Config{}, err
	}
	defer c.Close()
	specs, err := listNamespaces(context.Background(), c)
	if err != nil {
		return raft.Config{}, err
	}
	for _, s := range specs {
		if s.Name != ns {
			continue
		}
		if s.Strategy != "raft" {
			return raft.Config{}, fmt.Errorf("namespace %q has strategy %s, not raft", ns, s.Strategy)
		}
		cfg, err := raft.ConfigFromParams("", "", s.Params)
		if err != nil {
			return raft.Config{}, fmt.Errorf("namespace %q: %w", ns, err)
		}
		for _, n := range cfg.Nodes {
			if n.ClientAddr == "" {
				return raft.Config{}, fmt.Errorf("namespace %q has no client-addrs parameter: cannot reach its nodes", ns)
			}
		}
		return cfg, nil
	}
	return raft.Config{}, fmt.Errorf("no namespace %q at %s", ns, addr)
}

// whereShards is `dialkv admin where-shards`: every shard's members, the
// replicas nodes run after their removal, and the node list.
func whereShards(args []string, stdout, _ io.Writer) error {
	fs := flags("where-shards", "--namespace NS [--addr HOST:PORT]", stdout)
	addr := fs.String("addr", "127.0.0.1:7379", "a node's client API address (to read the namespace's spec)")
	ns := fs.String("namespace", "", "raft namespace")
	timeout := fs.Duration("timeout", 3*time.Second, "deadline of each call")
	cf := connFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *ns == "" {
		return usageErr("--namespace is required")
	}
	dopts, err := dialOptions(cf)
	if err != nil {
		return err
	}
	cfg, err := raftNamespace(*addr, *ns, dopts)
	if err != nil {
		return err
	}
	call := nodes.DialRaftCaller(dopts, *timeout)
	p, err := nodes.ReadRaftPlacement(context.Background(), call, *ns, cfg.Nodes)
	if err != nil {
		return err
	}
	shards := max(cfg.Shards, 1)
	for sh := range shards {
		ms, ok := p.Members[sh]
		if !ok {
			fmt.Fprintf(stdout, "shard %d: unknown (no node that answered hosts it)\n", sh)
			continue
		}
		ms = append([]string(nil), ms...)
		sort.Strings(ms)
		line := fmt.Sprintf("shard %d: %s", sh, strings.Join(ms, ", "))
		if nv := p.NonVoting[sh]; len(nv) > 0 {
			// A move under way (catching up before its promotion), or one
			// cut short there.
			line += " (non-voting: " + strings.Join(nv, ", ") + ")"
		}
		fmt.Fprintln(stdout, line)
	}
	retired := map[consistency.NodeID]bool{}
	for _, r := range cfg.Retired {
		retired[r] = true
	}
	for _, n := range cfg.Nodes {
		id := string(n.ID)
		var state []string
		if _, ok := p.Hosted[id]; !ok {
			state = append(state, "no answer")
		}
		if retired[n.ID] {
			state = append(state, "retired")
		}
		if st := p.Stale[id]; len(st) > 0 {
			state = append(state, fmt.Sprintf("removed replicas still running: %v", st))
		}
		count := 0
		for _, ms := range p.Members {
			for _, m := range ms {
				if m == id {
					count++
				}
			}
		}
		fmt.Fprintf(stdout, "node %s (%s): %d replicas %s\n", id, n.ClientAddr, count, strings.Join(state, "; "))
	}
	return nil
}

// moveShard is `dialkv admin move-shard`: one replica of a raft shard
// from one node to another (add as non-voting, join, catch up, promote,
// remove, leave).
func moveShard(args []string, stdout, _ io.Writer) error {
	fs := flags("move-shard", "--namespace NS --shard N --from NODE --to NODE [--addr HOST:PORT]", stdout)
	addr := fs.String("addr", "127.0.0.1:7379", "a node's client API address (to read the namespace's spec)")
	ns := fs.String("namespace", "", "raft namespace")
	shard := fs.Int("shard", -1, "shard index")
	from := fs.String("from", "", "node whose replica moves (empty: only add one on --to)")
	to := fs.String("to", "", "node that receives the replica (empty: only remove the one on --from)")
	timeout := fs.Duration("timeout", 60*time.Second, "deadline of the whole move")
	cf := connFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *ns == "" || *shard < 0 || (*from == "" && *to == "") || *from == *to {
		return usageErr("--namespace, --shard and at least one of --from and --to (different) are required")
	}
	dopts, err := dialOptions(cf)
	if err != nil {
		return err
	}
	cfg, err := raftNamespace(*addr, *ns, dopts)
	if err != nil {
		return err
	}
	if *shard >= max(cfg.Shards, 1) {
		return usageErr("--shard %d: the namespace has %d shards", *shard, max(cfg.Shards, 1))
	}
	addrs := map[string]string{}
	for _, n := range cfg.Nodes {
		addrs[string(n.ID)] = n.ClientAddr
	}
	for _, n := range []string{*from, *to} {
		if _, ok := addrs[n]; n != "" && !ok {
			return fmt.Errorf("node %q is not in namespace %s's nodes (add it with RAFT.NODES ADD)", n, *ns)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	call := nodes.DialRaftCaller(dopts, 5*time.Second)
	p, err := nodes.ReadRaftPlacement(ctx, call, *ns, cfg.Nodes)
	if err != nil {
		return err
	}
	members, ok := p.Members[*shard]
	if !ok {
		return fmt.Errorf("shard %d: no answering node hosts it", *shard)
	}
	has := map[string]bool{}
	for _, m := range members {
		has[m] = true
	}
	if *from != "" && !has[*from] {
		return fmt.Errorf("shard %d: %s is not a member (members: %s)", *shard, *from, strings.Join(members, ", "))
	}
	if *to != "" && has[*to] {
		return fmt.Errorf("shard %d: %s is a member already (members: %s)", *shard, *to, strings.Join(members, ", "))
	}
	if *from != "" && *to == "" && len(members) <= 1 {
		return errors.New("refusing to remove the shard's last replica")
	}
	// A --from node that does not answer is removed first (adding first
	// would need a majority of a larger group with one member gone).
	_, fromUp := p.Hosted[*from]
	mv := raft.Move{Kind: "manual", Shard: *shard, From: *from, To: *to, RemoveFirst: *from != "" && (*to == "" || !fromUp), Reason: "dialkv admin move-shard"}
	start := time.Now()
	m := nodes.RaftMover{Call: call, Namespace: *ns, Addrs: addrs, Log: func(msg string, args ...any) {
		fmt.Fprintf(stdout, "%7.3fs %s %v\n", time.Since(start).Seconds(), msg, args)
	}}
	if err := m.Move(ctx, mv, members); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "moved %v in %v\n", mv, time.Since(start).Round(time.Millisecond))
	return nil
}
