package checker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const usageText = `Usage: dialkv check --history FILE [--replicas FILE] [--checks LIST] [--out DIR] [flags]

Checks a recorded history (JSON lines, see docs/checker.md) for consistency
anomalies and writes summary.md, summary.json and report.html into DIR.

Checks (comma-separated, or "all"; default: linearizable,session,causal,convergence,durability,staleness):
  linearizable   Porcupine, per key: register/counter/set models
  session        read-your-writes, monotonic reads, monotonic writes, writes-follow-reads
  causal         causal consistency (CC): CyclicCO, WriteCOInitRead, ThinAirRead, WriteCORead
  causal-convergence  causal convergence (CCv, causal+): the CC patterns plus CyclicCF
  causal-memory  causal memory (CM): the CC patterns plus WriteHBInitRead, CyclicHB (small histories)
  convergence    replica states after quiescence are equal (needs --replicas)
  durability     lost acknowledged set adds, reads of values never written
  staleness      how far behind the acknowledged writes each read was

Exit codes: 0 all checks passed (or were skipped), 1 a violation was found,
2 a check could not finish (timeout, too large) or the input is unreadable,
3 usage error.

Flags:
`

// Main runs `dialkv check`.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dialkv check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	historyPath := fs.String("history", "", "history file (JSON lines), required")
	replicasPath := fs.String("replicas", "", "replica states after quiescence (JSON lines of {node, data}), for convergence (default: replicas.jsonl beside the history, if there)")
	checks := fs.String("checks", strings.Join(DefaultChecks, ","), "checks to run, comma-separated, or all")
	out := fs.String("out", "", "directory for summary.md, summary.json and report.html (none: print only)")
	timeout := fs.Duration("timeout", 60*time.Second, "time budget of the linearizability check")
	maxStale := fs.Int("max-stale", -1, "staleness bound in acknowledged writes (-1: measure only)")
	examples := fs.Int("examples", 10, "anomalies kept per check in the reports")
	cmLimit := fs.Int("cm-limit", 5000, "largest history the causal-memory check attempts")
	noRT := fs.Bool("no-realtime-order", false, "never order writes by real time (stores whose last-writer-wins order may contradict it and that report no versions)")
	help := fs.Bool("help", false, "show this help")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
		return 3
	}
	if *help {
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dialkv check: unexpected argument %q (run 'dialkv check --help')\n", fs.Arg(0))
		return 3
	}
	if *historyPath == "" {
		fmt.Fprintln(stderr, "dialkv check: --history is required (run 'dialkv check --help')")
		return 3
	}
	names, err := ParseChecks(*checks)
	if err != nil {
		fmt.Fprintf(stderr, "dialkv check: %v\n", err)
		return 3
	}
	if *timeout <= 0 || *examples <= 0 {
		fmt.Fprintln(stderr, "dialkv check: --timeout and --examples must be positive")
		return 3
	}
	ops, err := ReadHistoryFile(*historyPath)
	if err == nil {
		err = Validate(ops)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dialkv check: %v\n", err)
		return 2
	}
	var replicas []ReplicaState
	if *replicasPath == "" {
		// a simulator run directory holds both files
		beside := filepath.Join(filepath.Dir(*historyPath), "replicas.jsonl")
		if _, err := os.Stat(beside); err == nil {
			*replicasPath = beside
			fmt.Fprintf(stdout, "replica states: %s (beside the history)\n", beside)
		}
	}
	if *replicasPath != "" {
		replicas, err = ReadReplicasFile(*replicasPath)
		if err != nil {
			fmt.Fprintf(stderr, "dialkv check: %v\n", err)
			return 2
		}
	}
	opts := DefaultOptions()
	opts.Checks = names
	opts.Timeout = *timeout
	opts.BoundStaleness, opts.MaxStaleVersions = *maxStale >= 0, *maxStale
	opts.MaxExamples = *examples
	opts.CausalMemoryLimit = *cmLimit
	opts.NoRealTimeOrder = *noRT
	res := Check(ops, replicas, opts)
	fmt.Fprintf(stdout, "%s: %d ops, %d keys, %d sessions\n", *historyPath, res.Ops, res.Keys, res.Sessions)
	for _, c := range res.Checks {
		fmt.Fprintf(stdout, "  %-18s %-9s %s\n", c.Name, c.Verdict, c.Summary)
	}
	if *out != "" {
		if err := WriteReports(*out, res); err != nil {
			fmt.Fprintf(stderr, "dialkv check: %v\n", err)
			return 2
		}
		fmt.Fprintf(stdout, "reports: %s/summary.md, %s/summary.json, %s/report.html\n", *out, *out, *out)
	}
	fmt.Fprintf(stdout, "verdict: %s\n", res.Verdict)
	return res.ExitCode()
}

// ReadReplicas parses replica states, one JSON object per line.
func ReadReplicas(r io.Reader) ([]ReplicaState, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 256<<20)
	var out []ReplicaState
	line := 0
	for sc.Scan() {
		line++
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var st ReplicaState
		if err := json.Unmarshal(sc.Bytes(), &st); err != nil {
			return nil, fmt.Errorf("checker: replicas line %d: %w", line, err)
		}
		out = append(out, st)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("checker: replicas line %d: %w", line+1, err)
	}
	return out, nil
}

// ReadReplicasFile reads a replicas.jsonl file.
func ReadReplicasFile(path string) ([]ReplicaState, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checker: %w", err)
	}
	defer f.Close()
	return ReadReplicas(f)
}

// EncodeReplicas renders states as replicas.jsonl (one ReplicaState per
// line), the inverse of ReadReplicas.
func EncodeReplicas(states []ReplicaState) ([]byte, error) {
	var b bytes.Buffer
	for _, st := range states {
		line, err := json.Marshal(st)
		if err != nil {
			return nil, fmt.Errorf("checker: encode replica %s: %w", st.Node, err)
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}
