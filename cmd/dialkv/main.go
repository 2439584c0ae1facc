// Command dialkv is the one dialkv binary: a thin main that dispatches to the
// subcommand packages. Run `dialkv help` for the list.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/clients/bench"
	"github.com/dialkv/dialkv/clients/cli"
	"github.com/dialkv/dialkv/clients/jepsen"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/nodes/admin"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/sim"
)

// subcommand is one `dialkv NAME` entry.
type subcommand struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func subcommands() []subcommand {
	return []subcommand{
		{"node", "run a dialkv node", nodes.Main},
		{"demo", "start a local cluster on loopback, ready for the CLI", nodes.DemoMain},
		{"cli", "redis-cli-like client: one-shot or interactive", cli.Main},
		{"sim", "run the deterministic simulator", sim.Main},
		{"check", "check a recorded history for consistency anomalies", checker.Main},
		{"bench", "load generator (YCSB-like mixes, HDR latency histograms)", bench.Main},
		{"admin", "cluster operations: members, namespaces, where a key lives, backup, restore", admin.Main},
		{"jepsen", "fault tests on real processes (kill -9, SIGSTOP, partitions) with checked histories", jepsen.Main},
		{"certs", "make a development CA and node/client certificates", security.CertsMain},
		{"secret", "make a password hash or a bearer token for an --auth-file policy", func(a []string, o, e io.Writer) int { return security.SecretMain(a, os.Stdin, o, e) }},
		{"version", "print the build's version", versionMain},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 3
		}
		return 0
	}
	for _, sc := range subcommands() {
		if sc.name == args[0] {
			return sc.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "dialkv: unknown command %q (run 'dialkv help')\n", args[0])
	return 3
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "dialkv — a distributed key-value store whose consistency is a dial")
	fmt.Fprintln(w, "\nUsage: dialkv COMMAND [flags]   (dialkv COMMAND --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	for _, sc := range subcommands() {
		fmt.Fprintf(w, "  %-8s %s\n", sc.name, sc.summary)
	}
}

func versionMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintln(stdout, "Usage: dialkv version\n\nPrints the module version, Go version and VCS revision of this build.")
		return 0
	}
	v, goV, rev := "(devel)", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		v, goV = bi.Main.Version, bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	fmt.Fprintf(stdout, "dialkv %s %s %s\n", v, goV, rev)
	return 0
}
