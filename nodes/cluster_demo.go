package nodes

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/internal/freeport"
)

// demoClusterOptions are `dialkv demo --nodes N`'s settings.
type demoClusterOptions struct {
	nodes    int
	strategy string // local, quorum, causal or raft
	regions  int    // causal: number of regions
	// regionDelay (causal) is added to every peer message between nodes
	// of different regions, one way.
	regionDelay time.Duration
	metrics     string // metrics address of n1 ("" none); the others pick free ports
	resolve     string // causal: conflict handling, lww or siblings ("": default)
	shards      int    // raft: number of shards
	// raftParams are added to the raft namespace's parameters.
	raftParams map[string]string
	listen     string // first node's client address; the others follow
	dir        string
	log        *slog.Logger
}

// demoNamespace is the namespace `dialkv demo --nodes N` creates.
const demoNamespace = "demo"

// demoAddrs picks each node's client and peer addresses: from the base
// address's port, n1 uses PORT and PORT+1, n2 PORT+10 and PORT+11, ...; port
// 0 picks free ports.
func demoAddrs(listen string, nodes int) ([]ClusterPeer, error) {
	addrs, err := demoPortAddrs(listen, nodes, 0, 1)
	if err != nil {
		return nil, err
	}
	peers := make([]ClusterPeer, nodes)
	for i, a := range addrs {
		peers[i] = ClusterPeer{ID: fmt.Sprintf("n%d", i+1), Client: a[0], Peer: a[1]}
	}
	return peers, nil
}

// demoPortAddrs returns, for each of n demo nodes, one address per offset:
// node i's is host:PORT+10*i+offset, with host and PORT from listen, or a
// free port of host when PORT is 0.
func demoPortAddrs(listen string, n int, offsets ...int) ([][]string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: %w", listen, err)
	}
	base, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: bad port", listen)
	}
	var free []string
	if base == 0 {
		if free, err = freeport.AddrsOn(host, n*len(offsets)); err != nil {
			return nil, err
		}
	}
	out := make([][]string, n)
	for i := range out {
		out[i] = make([]string, len(offsets))
		for j, off := range offsets {
			if base == 0 {
				out[i][j] = free[i*len(offsets)+j]
			} else {
				out[i][j] = net.JoinHostPort(host, strconv.Itoa(base+10*i+off))
			}
		}
	}
	return out, nil
}

// demoRegions splits the nodes into k regions of consecutive nodes:
// "r1:n1,n2;r2:n3".
func demoRegions(peers []ClusterPeer, k int) string {
	k = max(1, min(k, len(peers)))
	groups := make([][]string, k)
	for i, p := range peers {
		groups[i*k/len(peers)] = append(groups[i*k/len(peers)], p.ID)
	}
	parts := make([]string, k)
	for i, g := range groups {
		parts[i] = fmt.Sprintf("r%d:%s", i+1, strings.Join(g, ","))
	}
	return strings.Join(parts, ";")
}

// startDemoCluster starts o.nodes cluster members in this process and
// creates the demo namespace (strategy quorum, causal or raft) at n1.
func startDemoCluster(o demoClusterOptions) ([]*ClusterNode, *NamespaceSpec, error) {
	peers, err := demoAddrs(o.listen, o.nodes)
	if err != nil {
		return nil, nil, err
	}
	var nodes []*ClusterNode
	closeAll := func() {
		for _, cn := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			cn.Close(ctx)
			cancel()
		}
	}
	regions := demoRegions(peers, o.regions)
	regionOf := map[string]string{}
	for _, part := range strings.Split(regions, ";") {
		name, ids, _ := strings.Cut(part, ":")
		for _, id := range strings.Split(ids, ",") {
			regionOf[id] = name
		}
	}
	for i, p := range peers {
		cc := ClusterConfig{Name: "demo", Peers: peers, Gossip: &GossipOptions{Listen: "127.0.0.1:0"}}
		if i > 0 {
			cc.Gossip.Join = []string{nodes[0].GossipAddr()} // failure detection (docs/cluster.md)
		}
		if o.strategy == "causal" && o.regionDelay > 0 {
			cc.PeerDelay = map[string]time.Duration{}
			for _, q := range peers {
				if regionOf[q.ID] != regionOf[p.ID] {
					cc.PeerDelay[q.ID] = o.regionDelay
				}
			}
		}
		metrics := o.metrics
		if i > 0 && metrics != "" {
			metrics = "127.0.0.1:0"
		}
		cn, err := StartClusterNode(
			Config{ID: p.ID, Listen: p.Client, DataDir: filepath.Join(o.dir, p.ID), Fsync: core.SyncAlways, MetricsAddr: metrics, Logger: o.log.With("node", p.ID), Version: buildVersion()},
			cc,
		)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("start %s: %w", p.ID, err)
		}
		nodes = append(nodes, cn)
	}
	if o.strategy == "local" {
		return nodes, nil, nil
	}
	spec := NamespaceSpec{Name: demoNamespace, Strategy: o.strategy}
	if o.strategy == "causal" {
		spec.Params = map[string]string{"regions": regions}
		if o.resolve != "" {
			spec.Params["resolve"] = o.resolve
		}
	}
	if o.strategy == "raft" {
		if spec.Params, err = demoRaftParams(o.listen, peers, o.shards); err != nil {
			closeAll()
			return nil, nil, err
		}
		for k, v := range o.raftParams {
			spec.Params[k] = v
		}
	}
	if err := nodes[0].CreateNamespace(spec); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("create namespace %s: %w", spec.Name, err)
	}
	// Wait (briefly) for the namespace to reach every node.
	deadline := time.Now().Add(10 * time.Second)
	for _, cn := range nodes {
		for cn.namespace(spec.Name) == nil && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if o.strategy == "raft" {
		if err := waitRaftLeaders(nodes, spec.Name, 20*time.Second); err != nil {
			closeAll()
			return nil, nil, err
		}
	}
	return nodes, &spec, nil
}

// runDemoCluster is `dialkv demo --nodes N`: it prints the addresses and the
// CLI commands, then waits for Ctrl-C.
func runDemoCluster(o demoClusterOptions, keep bool, stdout, stderr io.Writer) int {
	nodes, spec, err := startDemoCluster(o)
	if err != nil {
		fmt.Fprintf(stderr, "dialkv demo: %v\n", err)
		if strings.Contains(err.Error(), "address already in use") {
			fmt.Fprintf(stderr, "dialkv demo: a port is taken (another demo or node?); try --listen 127.0.0.1:0 for free ports\n")
		}
		return 1
	}
	removed := ", removed on exit"
	if keep {
		removed = ", kept on exit"
	}
	fmt.Fprintf(stdout, "dialkv demo: %d nodes, cluster \"demo\" (fsync always; data in %s%s)\n", len(nodes), o.dir, removed)
	tw := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "  node\tclient API\tpeer API\tmetrics\n")
	for _, cn := range nodes {
		m := "-"
		if a := cn.MetricsAddr(); a != "" {
			m = "http://" + a + "/metrics"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", cn.cfg.ID, cn.Addr(), cn.PeerAddr(), m)
	}
	tw.Flush()
	nsFlag := ""
	if spec != nil {
		fmt.Fprintf(stdout, "namespace %q: strategy %s %v (on every node)\n", spec.Name, spec.Strategy, spec.Params)
		nsFlag = " --namespace " + spec.Name
		if spec.Strategy == "causal" {
			fmt.Fprintf(stdout, "causal: each region holds every key, sharded over its nodes; any node serves any key (it\n"+
				"forwards to the key's owner in its region). Writes reach the other regions asynchronously")
			if o.regionDelay > 0 {
				fmt.Fprintf(stdout, "\n(peer links between regions delayed by %v one way)", o.regionDelay)
			}
			fmt.Fprintf(stdout, "; the lag\nis the metric dialkv_causal_replication_lag_seconds.\n")
		}
		if spec.Strategy == "raft" {
			fmt.Fprintf(stdout, "raft: requests go to each shard's leader (the CLI follows MOVED); multi-key commands need\n"+
				"keys on one shard: use a hash tag, e.g. MSET {u1}:a 1 {u1}:b 2\n")
		}
	} else {
		fmt.Fprintf(stdout, "strategy local: each node's \"default\" namespace is its own (not replicated)\n")
	}
	bin := demoBinary()
	a1, a3 := nodes[0].Addr(), nodes[len(nodes)-1].Addr()
	fmt.Fprintf(stdout, "\nTalk to it from another terminal:\n")
	tw = tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintf(tw, "  %s cli --addr %s%s\tinteractive; type \"help\"\n", bin, a1, nsFlag)
	fmt.Fprintf(tw, "  %s cli --addr %s%s SET greeting hello\twrite at %s\n", bin, a1, nsFlag, nodes[0].cfg.ID)
	fmt.Fprintf(tw, "  %s cli --addr %s%s GET greeting\tread at %s\n", bin, a3, nsFlag, nodes[len(nodes)-1].cfg.ID)
	tw.Flush()
	waitForStop(stdout)
	// The nodes stop together: closed one after another, the last ones'
	// requests in flight on a raft shard would wait for a quorum that the
	// first ones already took away, until the close timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, cn := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cn.Close(ctx)
		}()
	}
	wg.Wait()
	code := 0
	for i, err := range errs {
		if err != nil {
			fmt.Fprintf(stderr, "dialkv demo: close %s: %v\n", nodes[i].cfg.ID, err)
			code = 1
		}
	}
	return code
}
