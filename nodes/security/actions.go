package security

import (
	"strings"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// ClusterScope is the namespace a cluster-wide command is authorized
// against: only a grant whose namespace pattern is "*" covers it (a prefix
// pattern such as "app-*" does not match it, and no namespace may be named
// "*").
const ClusterScope = "*"

// Need is what one command needs: an action, on the request's namespace or
// (Cluster) on ClusterScope.
type Need struct {
	Action  Action
	Cluster bool
}

// union is the need of a batch holding both commands: the actions add up,
// and one cluster-wide command makes the whole batch cluster-wide.
func (n Need) union(o Need) Need {
	return Need{Action: n.Action | o.Action, Cluster: n.Cluster || o.Cluster}
}

// hasPrefixFold reports whether s starts with the upper-case ASCII prefix,
// ignoring case, without allocating.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// CommandNeed is what a command needs (docs/security.md, "Actions"):
//
//   - cluster-management commands need admin: CLUSTER RING SET (and any
//     other CLUSTER subcommand that is not a plain report) on the whole
//     cluster (ClusterScope); RAFT.ADD, RAFT.REMOVE, RAFT.JOIN, RAFT.LEAVE,
//     RAFT.NODES with arguments, and any unknown RAFT.* command, on the
//     request's namespace;
//   - their reports read: CLUSTER MEMBERS and CLUSTER RING on the
//     request's namespace; RAFT.MEMBERS, RAFT.HOSTED, RAFT.SYNCED and RAFT.NODES
//     without arguments on the request's namespace; HOTKEYS and CLUSTER
//     REBUILD [NAMESPACE] on the whole cluster (they list keys of every
//     namespace);
//   - a data command that core reports read-only (GET, EXISTS, ...) reads;
//     every other command writes, an unknown one included (fail closed).
//
// It does not allocate for upper-case command names (the hot path: a few
// string comparisons before core's table lookup).
func CommandNeed(name string, args [][]byte) Need {
	switch {
	case hasPrefixFold(name, "RAFT."):
		return Need{Action: raftAction(name[len("RAFT."):], len(args))}
	case strings.EqualFold(name, "CLUSTER"):
		if len(args) == 1 && (strings.EqualFold(string(args[0]), "MEMBERS") || strings.EqualFold(string(args[0]), "RING")) {
			return Need{Action: Read}
		}
		if len(args) <= 2 && len(args) >= 1 && strings.EqualFold(string(args[0]), "REBUILD") {
			// A report, but it names lost keys of any causal namespace
			// (NAMESPACE is not the request's): read on the whole cluster,
			// as HOTKEYS.
			return Need{Action: Read, Cluster: true}
		}
		// CLUSTER RING SET changes the member list of every node, and
		// anything else under CLUSTER is refused unless the caller could
		// have done that (fail closed).
		return Need{Action: Admin, Cluster: true}
	case strings.EqualFold(name, "HOTKEYS"):
		return Need{Action: Read, Cluster: true}
	}
	if core.IsReadOnly(name) {
		return Need{Action: Read}
	}
	return Need{Action: Write}
}

// raftAction is the action of RAFT.<sub> with nargs arguments.
func raftAction(sub string, nargs int) Action {
	switch strings.ToUpper(sub) {
	case "MEMBERS", "HOSTED", "SYNCED":
		return Read
	case "NODES":
		if nargs == 0 {
			return Read
		}
	}
	return Admin
}

// CommandAction is the action a command needs, ignoring scope (see
// CommandNeed).
func CommandAction(name string, args [][]byte) Action { return CommandNeed(name, args).Action }

// commandNeed is CommandNeed of a Thrift command; a nil command writes.
func commandNeed(c *gen.Command) Need {
	if c == nil {
		return Need{Action: Write}
	}
	return CommandNeed(c.Name, c.Argv)
}

// commandsNeed is the union of the commands' needs (read for an empty
// list).
func commandsNeed(cmds []*gen.Command) Need {
	var n Need
	for _, c := range cmds {
		n = n.union(commandNeed(c))
	}
	if n.Action == 0 {
		n.Action = Read
	}
	return n
}

// scope is the namespace a need is checked against.
func (n Need) scope(opts *gen.RequestOptions) string {
	if n.Cluster {
		return ClusterScope
	}
	return nsOf(opts)
}
