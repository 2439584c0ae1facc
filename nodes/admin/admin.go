package admin

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

type command struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"members", "--addrs A,B,...", "ping every node (id, version, round trip, up or down) and show the gossip view (CLUSTER MEMBERS)", members},
		{"namespaces", "[list | create NAME STRATEGY [KEY VALUE]... | drop NAME] --addr A", "list, create or drop namespaces", namespaces},
		{"where", "KEY --addr A --namespace NS [--members n1,n2,...]", "which nodes (and raft shard) hold a key", where},
		{"backup", "--admin n1=HOST:PORT,... --out DIR [--cluster] [--no-fence]", "online cluster backup as one cut (a short cluster-wide write fence): every node's checkpoint and catalog, raft shards' exports, and a manifest (--cluster: refuse an incomplete one)", backup},
		{"checkpoint", "--admin HOST:PORT [--list]", "take (or list) a retained checkpoint on one node, for point-in-time restore", checkpoint},
		{"restore", "--from DIR (--node ID | --at TIME) --data NEWDIR | --from DIR --raft --admin HOST:PORT,...", "restore a cluster backup's node, or the newest retained checkpoint at or before TIME, into a new data directory; --raft: import the backup's raft namespaces into a running cluster", restore},
		{"ring", "[--addr A]", "the quorum ring's member list and each namespace's handoff progress", ringCmd},
		{"rebuild", "--addrs A,B,... [--namespace NS]", "each node's causal store rebuild: waiting for whom, seeded by whom, requests refused, versions lost (CLUSTER REBUILD)", rebuildCmd},
		{"add-node", "ID[=CLIENT@PEER] [--addr A]", "add a node to the ring: joint quorums, hand off the segments (quorum) and keys (causal: only the moving keys refused meanwhile; --region R) it gains, switch (docs/cluster.md)", addNode},
		{"remove-node", "ID [--down] [--addr A]", "decommission a node: its segments are handed off to their new owners before it leaves the ring (--down: it is dead, the other replicas hand its keys off)", removeNode},
		{"move-shard", "--namespace NS --shard N --from NODE --to NODE --addr A", "move a raft shard's replica between nodes (docs/raft.md)", moveShard},
		{"where-shards", "--namespace NS --addr A", "each raft shard's members, replicas per node", whereShards},
	}
}

// Main is `dialkv admin`. Exit status 0 ok, 1 the operation failed, 2
// usage.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stdout, "Usage: dialkv admin COMMAND [args] (dialkv admin COMMAND --help for its flags)\n\nCommands:")
		for _, c := range commands() {
			fmt.Fprintf(stdout, "  %-11s %s\n", c.name, c.summary)
		}
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				fmt.Fprintf(stderr, "dialkv admin %s: %v\n", c.name, err)
				return 2
			}
			fmt.Fprintf(stderr, "dialkv admin %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "dialkv admin: unknown command %q (run 'dialkv admin help')\n", args[0])
	return 2
}

var errUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// flags makes a FlagSet whose --help prints usage and the flags to stdout.
func flags(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "Usage: dialkv admin %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func members(args []string, stdout, stderr io.Writer) error {
	fs := flags("members", "--addrs HOST:PORT,...", stdout)
	addrs := fs.String("addrs", "127.0.0.1:7379", "the nodes' client API addresses")
	timeout := fs.Duration("timeout", 2*time.Second, "ping deadline")
	cf := connFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	dopts, err := dialOptions(cf)
	if err != nil {
		return err
	}
	down := 0
	var gossipFrom string
	fmt.Fprintf(stdout, "%-22s %-8s %-6s %-10s %s\n", "ADDRESS", "ID", "STATUS", "RTT", "VERSION")
	for _, a := range splitList(*addrs) {
		start := time.Now()
		info, err := ping(a, *timeout, dopts)
		rtt := time.Since(start)
		if err != nil {
			down++
			fmt.Fprintf(stdout, "%-22s %-8s %-6s %-10s %v\n", a, "?", "down", "-", err)
			continue
		}
		fmt.Fprintf(stdout, "%-22s %-8s %-6s %-10s %s\n", a, info.ID, "up", rtt.Round(10*time.Microsecond), info.GetVersion())
		if gossipFrom == "" {
			gossipFrom = a
		}
	}
	// The gossip view (CLUSTER MEMBERS) of the first node that answered:
	// every member it knows of, with its state, including nodes not in
	// --addrs.
	if gossipFrom != "" {
		r, err := clusterMembers(gossipFrom, *timeout, dopts)
		if err != nil {
			fmt.Fprintf(stdout, "\n%v\n", err)
		} else {
			fmt.Fprintf(stdout, "\nCLUSTER MEMBERS at %s (gossip view):\n", gossipFrom)
			for _, line := range r {
				fmt.Fprintf(stdout, "  %s\n", line)
			}
		}
	}
	if down > 0 {
		return fmt.Errorf("%d node(s) down", down)
	}
	return nil
}

func namespaces(args []string, stdout, stderr io.Writer) error {
	fs := flags("namespaces", "[list | create NAME STRATEGY [KEY VALUE]... | drop NAME] [--addr HOST:PORT]", stdout)
	addr := fs.String("addr", "127.0.0.1:7379", "a node's client API address")
	cf := connFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	dopts, err := dialOptions(cf)
	if err != nil {
		return err
	}
	c, err := dial(*addr, 10*time.Second, dopts)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	if len(pos) == 0 {
		pos = []string{"list"}
	}
	switch pos[0] {
	case "list":
		specs, err := listNamespaces(ctx, c)
		if err != nil {
			return err
		}
		sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
		fmt.Fprintf(stdout, "%-16s %-8s %s\n", "NAME", "STRATEGY", "PARAMS")
		for _, s := range specs {
			keys := make([]string, 0, len(s.Params))
			for k := range s.Params {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var ps []string
			for _, k := range keys {
				ps = append(ps, k+"="+s.Params[k])
			}
			fmt.Fprintf(stdout, "%-16s %-8s %s\n", s.Name, s.Strategy, strings.Join(ps, " "))
		}
		return nil
	case "create":
		if len(pos) < 3 || len(pos)%2 == 0 {
			return usageErr("namespaces create NAME STRATEGY [KEY VALUE]...")
		}
		spec := &gen.NamespaceSpec{Name: pos[1], Strategy: pos[2], Params: map[string]string{}}
		for i := 3; i+1 < len(pos); i += 2 {
			spec.Params[pos[i]] = pos[i+1]
		}
		ctx, cancel := c.bound(ctx)
		defer cancel()
		if err := c.CreateNamespace(ctx, spec); err != nil {
			return fmt.Errorf("create namespace %s: %w", spec.Name, err)
		}
		fmt.Fprintln(stdout, "OK")
		return nil
	case "drop":
		if len(pos) != 2 {
			return usageErr("namespaces drop NAME")
		}
		ctx, cancel := c.bound(ctx)
		defer cancel()
		if err := c.DropNamespace(ctx, pos[1]); err != nil {
			return fmt.Errorf("drop namespace %s: %w", pos[1], err)
		}
		fmt.Fprintln(stdout, "OK (on this node only: docs/cluster.md)")
		return nil
	}
	return usageErr("unknown namespaces subcommand %q (want list, create or drop)", pos[0])
}

// Holders computes which nodes hold key in a namespace of spec, for a
// cluster whose member ids are members: local — the node asked; quorum and
// causal — the replicas' own placement (built offline from the same
// parameters and members); raft — the key's shard and its replicas.
func Holders(spec NamespaceSpec, members []string, key string) (string, []string, error) {
	switch spec.Strategy {
	case "local":
		return "local namespace: only on the node asked", nil, nil
	case "raft":
		shards, _ := strconv.Atoi(spec.Params["shards"])
		nodeList := splitList(spec.Params["nodes"])
		if len(nodeList) == 0 {
			return "", nil, errors.New("raft namespace without a nodes parameter")
		}
		replicas, _ := strconv.Atoi(spec.Params["replicas"])
		if replicas <= 0 {
			replicas = len(nodeList)
		}
		s := core.ShardOf([]byte(key), max(shards, 1))
		var out []string
		for _, i := range raft.Placement(s, replicas, len(nodeList)) {
			out = append(out, nodeList[i])
		}
		return fmt.Sprintf("raft shard %d of %d (initial placement; RAFT.MEMBERS %d shows moves)", s, max(shards, 1), s), out, nil
	case "quorum", "causal":
		if len(members) == 0 {
			return "", nil, usageErr("--members n1,n2,... (the cluster's node ids) is needed for %s namespaces", spec.Strategy)
		}
		ids := make([]consistency.NodeID, len(members))
		for i, m := range members {
			ids[i] = consistency.NodeID(m)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		newRep := quorum.New
		if spec.Strategy == "causal" {
			newRep = causal.New
		}
		rep, err := newRep(consistency.Config{ID: ids[0], Peers: ids, Engine: core.NewMemEngine(), Rand: rand.New(rand.NewPCG(1, 2)), Params: spec.Params})
		if err != nil {
			return "", nil, fmt.Errorf("%s parameters: %w", spec.Strategy, err)
		}
		p, ok := rep.(consistency.Placement)
		if !ok {
			return spec.Strategy + ": every member", members, nil
		}
		var out []string
		for _, id := range p.Holders(key) {
			out = append(out, string(id))
		}
		return spec.Strategy + " preference list", out, nil
	}
	return "", nil, fmt.Errorf("unknown strategy %q", spec.Strategy)
}

func where(args []string, stdout, stderr io.Writer) error {
	fs := flags("where", "KEY [--addr HOST:PORT] --namespace NS [--members n1,n2,...]", stdout)
	addr := fs.String("addr", "127.0.0.1:7379", "a node's client API address (to read the namespace's spec)")
	ns := fs.String("namespace", "default", "namespace")
	mem := fs.String("members", "", "the cluster's node ids (quorum and causal placement; default: the member list of the node at --addr)")
	cf := connFlags(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("where KEY")
	}
	dopts, err := dialOptions(cf)
	if err != nil {
		return err
	}
	c, err := dial(*addr, 10*time.Second, dopts)
	if err != nil {
		return err
	}
	defer c.Close()
	specs, err := listNamespaces(context.Background(), c)
	if err != nil {
		return err
	}
	for _, s := range specs {
		if s.Name == *ns {
			ids := splitList(*mem)
			if len(ids) == 0 && (s.Strategy == "quorum" || s.Strategy == "causal") {
				// The ring's members, as the node knows them.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				rep, err := nodes.RingAt(ctx, *addr, dopts)
				cancel()
				if err != nil {
					return fmt.Errorf("--members not given and the member list could not be read: %w", err)
				}
				for _, p := range rep.Membership.Members {
					ids = append(ids, p.ID)
				}
			}
			what, holders, err := Holders(s, ids, pos[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "key %q in %s (%s): %s", pos[0], s.Name, s.Strategy, what)
			if len(holders) > 0 {
				fmt.Fprintf(stdout, ": %s", strings.Join(holders, ", "))
			}
			fmt.Fprintln(stdout)
			return nil
		}
	}
	return fmt.Errorf("no namespace %q at %s", *ns, *addr)
}

// BackupManifest is manifest.json of a cluster backup.
type BackupManifest struct {
	Format  int          `json:"format"`
	Created time.Time    `json:"created"`
	Nodes   []BackupNode `json:"nodes"`
	// Raft lists the raft namespaces and where each shard's export is
	// (raftbackup.go).
	Raft []BackupRaft `json:"raft,omitempty"`
	// Cut says how the checkpoints were taken together (cut.go); nil or
	// without Fence: one node after the other, not one cut.
	Cut *CutReport `json:"cut,omitempty"`
}

// BackupNode is one node of a cluster backup: its checkpoint is in Dir
// (relative to the backup directory).
type BackupNode struct {
	ID       string                   `json:"id"`
	Admin    string                   `json:"admin"`
	Dir      string                   `json:"dir"`
	Manifest nodes.CheckpointManifest `json:"manifest"`
}

// Backup is AdminHTTP{}.Backup: plain HTTP without credentials.
func Backup(admins map[string]string, out string) (BackupManifest, error) {
	return AdminHTTP{}.Backup(admins, out)
}

// BackupWith is AdminHTTP{}.BackupWith: plain HTTP without credentials.
func BackupWith(admins map[string]string, out string, o BackupOptions) (BackupManifest, error) {
	return AdminHTTP{}.BackupWith(admins, out, o)
}

// Backup is BackupWith with the default options: one cut under a write
// fence.
func (a AdminHTTP) Backup(admins map[string]string, out string) (BackupManifest, error) {
	return a.BackupWith(admins, out, BackupOptions{})
}

// BackupWith fetches every node's checkpoint into out/ID and writes
// out/manifest.json, through a's connection settings. admins maps node ids
// to admin addresses. By default the checkpoints are one cut (cut.go):
// every node's write fence is raised, every node checkpoints, the fences
// are lowered, then the checkpoints are fetched. With o.NoFence each
// node's checkpoint (GET /v1/backup) is consistent on its own, and they
// are taken one after the other while writes go on.
func (a AdminHTTP) BackupWith(admins map[string]string, out string, o BackupOptions) (BackupManifest, error) {
	m := BackupManifest{Format: 1, Created: time.Now().UTC()}
	if _, err := os.Stat(out); err == nil {
		return m, fmt.Errorf("backup: %s already exists", out)
	}
	ids := make([]string, 0, len(admins))
	for id := range admins {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if o.NoFence {
		hc := a.client(30 * time.Minute)
		start := time.Now()
		for _, id := range ids {
			if o.beforeCheckpoint != nil {
				o.beforeCheckpoint(id)
			}
			dir := filepath.Join(out, id)
			if err := a.fetchTar(hc, admins[id], "/v1/backup", dir); err != nil {
				return m, fmt.Errorf("backup %s: %w", id, err)
			}
			nm, err := readNodeManifest(dir, id)
			if err != nil {
				return m, err
			}
			m.Nodes = append(m.Nodes, BackupNode{ID: id, Admin: admins[id], Dir: id, Manifest: nm})
		}
		m.Cut = &CutReport{Window: time.Since(start)}
	} else {
		ns, rep, err := a.backupCut(admins, ids, out, o)
		if err != nil {
			return m, err
		}
		m.Nodes, m.Cut = ns, rep
	}
	m.Raft = raftIndex(m.Nodes)
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return m, fmt.Errorf("backup: manifest: %w", err)
	}
	return m, os.WriteFile(filepath.Join(out, "manifest.json"), append(b, '\n'), 0o644)
}

func parseAdmins(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range splitList(s) {
		id, addr, ok := strings.Cut(p, "=")
		if !ok || id == "" || addr == "" {
			return nil, usageErr("--admin: %q: want ID=HOST:PORT", p)
		}
		out[id] = addr
	}
	if len(out) == 0 {
		return nil, usageErr("--admin ID=HOST:PORT,... is required")
	}
	return out, nil
}

func backup(args []string, stdout, stderr io.Writer) error {
	fs := flags("backup", "--admin n1=HOST:PORT,... --out DIR [--cluster] [--no-fence] [--fence-timeout D]", stdout)
	adm := fs.String("admin", "", "every node's id and admin API address (dialkv node --admin)")
	out := fs.String("out", "", "backup directory (must not exist)")
	cluster := fs.Bool("cluster", false, "a whole-cluster backup: fail (exit 1, the backup is kept for inspection) unless every cluster member is in it and every raft shard was exported")
	noFence := fs.Bool("no-fence", false, "no write fence: each node's checkpoint on its own, one after the other, writes going on (not one cut; docs/operations.md)")
	lease := fs.Duration("fence-timeout", nodes.DefaultFenceLease, "the write fence's lease on each node: the longest the nodes refuse writes if this command dies; the backup fails if its checkpoints take longer")
	cf := connFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	admins, err := parseAdmins(*adm)
	if err != nil {
		return err
	}
	if *out == "" {
		return usageErr("--out is required")
	}
	ah, err := adminHTTP(cf)
	if err != nil {
		return err
	}
	m, err := ah.BackupWith(admins, *out, BackupOptions{NoFence: *noFence, FenceLease: *lease})
	if err != nil {
		return err
	}
	for _, n := range m.Nodes {
		var inc, skip []string
		for _, ns := range n.Manifest.Namespaces {
			if ns.Included {
				inc = append(inc, ns.Spec.Name)
			} else {
				skip = append(skip, ns.Spec.Name+" ("+ns.Reason+")")
			}
		}
		fmt.Fprintf(stdout, "%s: %s at %s; namespaces %s", n.ID, n.Dir, n.Manifest.Created.Format(time.RFC3339Nano), strings.Join(inc, ", "))
		if len(skip) > 0 {
			fmt.Fprintf(stdout, "; not included: %s", strings.Join(skip, ", "))
		}
		fmt.Fprintln(stdout)
	}
	for _, r := range m.Raft {
		fmt.Fprintf(stdout, "raft %s: %d shard(s), exports %s\n", r.Spec.Name, r.Shards, strings.Join(r.Files, ", "))
	}
	if c := m.Cut; c != nil && c.Fence != "" {
		var per []string
		for _, n := range c.Nodes {
			per = append(per, fmt.Sprintf("%s held %v (drain %v, %d writes refused)", n.ID, n.Held.Round(time.Microsecond), n.Drain.Round(time.Microsecond), n.Refused))
		}
		fmt.Fprintf(stdout, "one cut: write fence %s, %v from the first raise to the last lowering (checkpoints %v); %s\n",
			c.Fence, c.Window.Round(time.Microsecond), c.Checkpoints.Round(time.Microsecond), strings.Join(per, "; "))
	} else {
		fmt.Fprintln(stdout, "no write fence (--no-fence): each node's checkpoint is consistent on its own; the backup is not one cut")
	}
	fmt.Fprintf(stdout, "backup of %d node(s) in %s\n", len(m.Nodes), *out)
	if *cluster {
		return checkCluster(m)
	}
	return nil
}

func checkpoint(args []string, stdout, stderr io.Writer) error {
	fs := flags("checkpoint", "--admin HOST:PORT [--list]", stdout)
	adm := fs.String("admin", "127.0.0.1:9380", "the node's admin API address")
	list := fs.Bool("list", false, "list the retained checkpoints instead of taking one")
	cf := connFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	ah, err := adminHTTP(cf)
	if err != nil {
		return err
	}
	method := http.MethodPost
	if *list {
		method = http.MethodGet
	}
	resp, err := ah.do(ah.client(10*time.Minute), method, *adm, "/v1/checkpoints")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(stdout, resp.Body)
	return err
}

// Restore makes data, a new data directory, from a backup: with node set,
// from the cluster backup at from (its manifest.json names the node);
// else from the newest retained checkpoint under from (a node's
// DATA/checkpoints) taken at or before at.
func Restore(from, node string, at time.Time, data string) (string, error) {
	if _, err := os.Stat(data); err == nil {
		return "", fmt.Errorf("restore: %s already exists (restore into a new directory)", data)
	}
	var src string
	if node != "" {
		m, err := readManifest(from)
		if err != nil {
			return "", err
		}
		for _, n := range m.Nodes {
			if n.ID == node {
				src = filepath.Join(from, n.Dir)
			}
		}
		if src == "" {
			return "", fmt.Errorf("restore: node %s is not in the backup", node)
		}
	} else {
		cp, err := nodes.CheckpointAt(from, at)
		if err != nil {
			return "", fmt.Errorf("restore: %w", err)
		}
		src = cp.Dir
	}
	if err := nodes.CopyTree(src, data); err != nil {
		return "", fmt.Errorf("restore: %w", err)
	}
	return src, nil
}

// readManifest reads a cluster backup's manifest.json.
func readManifest(from string) (BackupManifest, error) {
	var m BackupManifest
	b, err := os.ReadFile(filepath.Join(from, "manifest.json"))
	if err != nil {
		return m, fmt.Errorf("restore: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("restore: manifest: %w", err)
	}
	return m, nil
}

func restore(args []string, stdout, stderr io.Writer) error {
	fs := flags("restore", "--from DIR (--node ID | --at TIME) --data NEWDIR | --from DIR --raft --admin HOST:PORT,... [--namespaces A,B]", stdout)
	raftMode := fs.Bool("raft", false, "import the cluster backup's raft namespaces into a running cluster (create them there first: same name and shard count, the new cluster's addresses)")
	raftAdmins := fs.String("admin", "", "with --raft: the new cluster's nodes' admin API addresses")
	raftOnly := fs.String("namespaces", "", "with --raft: only these raft namespaces (default: all)")
	from := fs.String("from", "", "a cluster backup directory (with --node) or a node's DATA/checkpoints (with --at)")
	node := fs.String("node", "", "the node of the cluster backup to restore")
	atS := fs.String("at", "", "restore the newest retained checkpoint at or before this time (RFC 3339, e.g. 2026-11-24T22:00:00Z; \"now\" for the newest)")
	data := fs.String("data", "", "the new data directory (must not exist); start `dialkv node --data` on it")
	cf := connFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *raftMode {
		if *from == "" || *raftAdmins == "" || *data != "" || *node != "" || *atS != "" {
			return usageErr("--raft needs --from and --admin (and no --data, --node or --at)")
		}
		ah, err := adminHTTP(cf)
		if err != nil {
			return err
		}
		return ah.RaftRestore(*from, splitList(*raftAdmins), splitList(*raftOnly), stdout)
	}
	if *from == "" || *data == "" || (*node == "") == (*atS == "") {
		return usageErr("--from, --data and exactly one of --node and --at are required")
	}
	var at time.Time
	if *atS != "" {
		if *atS == "now" {
			at = time.Now()
		} else {
			t, err := time.Parse(time.RFC3339, *atS)
			if err != nil {
				return usageErr("--at: %v", err)
			}
			at = t
		}
	}
	src, err := Restore(*from, *node, at, *data)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s\n", src, *data)
	return nil
}
