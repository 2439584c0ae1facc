package admin

import (
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/dialkv/dialkv/nodes"
)

// rebuildCmd is `dialkv admin rebuild`: per node and causal namespace,
// the store rebuild status (CLUSTER REBUILD): waiting for whom, seeded by
// whom, requests and keys refused, versions lost, rebuilds it seeds and
// gone notices applied. Exit status 1 when a node does not answer or a
// rebuild is under way.
func rebuildCmd(args []string, stdout, stderr io.Writer) error {
	fs := flags("rebuild", "--addrs HOST:PORT,... [--namespace NS]", stdout)
	addrs := fs.String("addrs", "127.0.0.1:7379", "the nodes' client API addresses")
	ns := fs.String("namespace", "", "only this namespace (default: every causal namespace)")
	timeout := fs.Duration("timeout", 5*time.Second, "per-node deadline")
	cf := connFlags(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	dopts, err := dialOptions(cf)
	if err != nil {
		return err
	}
	down, rebuilding := 0, 0
	for _, a := range splitList(*addrs) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		rep, err := nodes.RebuildAt(ctx, a, dopts, *ns)
		cancel()
		if err != nil {
			down++
			fmt.Fprintf(stdout, "%s: %v\n", a, err)
			continue
		}
		names := make([]string, 0, len(rep.Namespaces))
		for n := range rep.Namespaces {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 && *ns != "" {
			fmt.Fprintf(stdout, "%s: no causal namespace %q\n", rep.Node, *ns)
		} else if len(names) == 0 {
			fmt.Fprintf(stdout, "%s: no causal namespace\n", rep.Node)
		}
		for _, n := range names {
			if rep.Namespaces[n].Rebuilding {
				rebuilding++
			}
			for _, line := range nodes.FormatRebuild(rep.Node, n, rep.Namespaces[n]) {
				fmt.Fprintln(stdout, line)
			}
		}
	}
	switch {
	case down > 0:
		return fmt.Errorf("%d node(s) did not answer", down)
	case rebuilding > 0:
		return fmt.Errorf("%d store rebuild(s) under way", rebuilding)
	}
	return nil
}
