package nodes

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
)

// rebuildStater is implemented by replicas that may rebuild their store
// from other regions (causal.Replica).
type rebuildStater interface {
	RebuildStatus() causal.RebuildStatus
}

// RebuildReport is a node's answer to CLUSTER REBUILD: per causal
// namespace it hosts, its replica's store rebuild (the one under way, or
// the last one this process finished), the rebuilding nodes of other
// regions it seeds, and the gone notices it applied.
type RebuildReport struct {
	Node       string                          `json:"node"`
	Namespaces map[string]causal.RebuildStatus `json:"namespaces"`
}

// rebuildReport collects the report, for namespace ns only when it is
// not empty.
func (c *cluster) rebuildReport(ns string) RebuildReport {
	rep := RebuildReport{Node: c.self, Namespaces: map[string]causal.RebuildStatus{}}
	c.mu.RLock()
	hosts := map[string]*ReplicaHost{}
	for n, h := range c.hosts {
		if ns == "" || n == ns {
			hosts[n] = h
		}
	}
	c.mu.RUnlock()
	for n, h := range hosts {
		h.Call(func(r consistency.Replica) {
			if rs, ok := r.(rebuildStater); ok {
				rep.Namespaces[n] = rs.RebuildStatus()
			}
		})
	}
	return rep
}

// rebuildCommand answers CLUSTER REBUILD [NAMESPACE] with the
// RebuildReport as JSON.
func (c *cluster) rebuildCommand(args [][]byte) core.Reply {
	if len(args) > 1 {
		return core.ErrorReply(core.Errorf(core.CodeErr, "syntax: CLUSTER REBUILD [NAMESPACE]"))
	}
	ns := ""
	if len(args) == 1 {
		ns = string(args[0])
	}
	b, err := json.Marshal(c.rebuildReport(ns))
	if err != nil {
		return core.ErrorReply(core.Errorf(core.CodeErr, "CLUSTER REBUILD: %v", err))
	}
	return core.Bulk(b)
}

// RebuildAt asks the node at addr for its CLUSTER REBUILD report (of
// namespace ns, or of every causal namespace when ns is empty).
func RebuildAt(ctx context.Context, addr string, dopts transport.DialOptions, ns string) (RebuildReport, error) {
	var rep RebuildReport
	args := []string{"REBUILD"}
	if ns != "" {
		args = append(args, ns)
	}
	b, err := clusterCall(ctx, addr, dopts, args...)
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("CLUSTER REBUILD at %s: %w", addr, err)
	}
	return rep, nil
}

// nodeList renders ids as "n1,n2" ("-" for none).
func nodeList(ids []consistency.NodeID) string {
	if len(ids) == 0 {
		return "-"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = string(id)
	}
	return strings.Join(s, ",")
}

// FormatRebuild renders one namespace's rebuild status of a node as the
// lines `dialkv admin rebuild` prints.
func FormatRebuild(node, ns string, st causal.RebuildStatus) []string {
	var lines []string
	switch {
	case st.Rebuilding:
		lines = append(lines, fmt.Sprintf("%s %s: REBUILDING since %s (last progress %s): waiting for %s; seeded by %s (partial: %s); %d seeds; %d requests refused (%d keys)",
			node, ns, stamp(st.Began), stamp(st.Progress), nodeList(st.Waiting), nodeList(st.SeededBy), nodeList(st.Partial), st.Seeded, st.Refused, st.RefusedKeys))
	case !st.Finished.IsZero():
		lines = append(lines, fmt.Sprintf("%s %s: rebuilt %s → %s; seeded by %s (partial: %s); %d seeds; %d requests refused (%d keys); %d versions lost; %d re-sent from a surviving copy",
			node, ns, stamp(st.Began), stamp(st.Finished), nodeList(st.SeededBy), nodeList(st.Partial), st.Seeded, st.Refused, st.RefusedKeys, len(st.Lost), st.Resent))
	default:
		lines = append(lines, fmt.Sprintf("%s %s: serving (no rebuild since it started)", node, ns))
	}
	for _, l := range st.Lost {
		lines = append(lines, "  lost: "+l.String())
	}
	switch {
	case st.Held > 0:
		lines = append(lines, fmt.Sprintf("  %d keys still refused: each waits for a write (of it, or one it depends on) that another rebuilding region holds", st.Held))
	case st.Held < 0:
		lines = append(lines, "  keys still refused: scanning for writes whose dependencies have not arrived")
	}
	if len(st.Feeding) > 0 {
		lines = append(lines, fmt.Sprintf("  seeding the rebuild of %s", nodeList(st.Feeding)))
	}
	if st.GoneApplied > 0 {
		lines = append(lines, fmt.Sprintf("  gone notices applied: %d (other nodes' lost writes)", st.GoneApplied))
	}
	if st.ReplacedApplied > 0 {
		lines = append(lines, fmt.Sprintf("  replaced writes applied: %d (other nodes' re-sent writes that newer writes replaced; not lost)", st.ReplacedApplied))
	}
	return lines
}

// stamp renders a replica time in UTC ("-" when zero).
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
