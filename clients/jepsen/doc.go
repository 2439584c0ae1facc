// Package jepsen runs Jepsen-style fault tests against real dialkv
// processes: it starts a cluster of `dialkv node` processes (on loopback) or
// containers (Docker, one network), runs the simulator's workloads
// (clients/workload) through the Go client with history recording, injects
// faults for real — kill -9 and restart, SIGSTOP/SIGCONT, network partitions
// (`docker network disconnect`) — heals, reads everything back, and checks
// the history with checker.Check. Reports use the simulator's layout:
// history.jsonl, trace.log (the fault log), replicas.jsonl, summary.json,
// summary.md, report.html and the checker's own reports in check/.
//
// Main is `dialkv jepsen`. docs/operations.md describes the faults, what each
// run checks, and what is not done (clock offsets: a static Go binary reads
// the clock through the vDSO, so libfaketime cannot shift it).
package jepsen
