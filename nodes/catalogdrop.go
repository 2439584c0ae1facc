package nodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/core"
)

// explicitGeneration returns a copy of spec whose GenerationParam is set
// even when it is 0: a spec sent to a peer (forwarded or pulled) names its
// generation, so the peer checks it against its tombstones instead of
// treating it as a new incarnation.
func explicitGeneration(spec NamespaceSpec) NamespaceSpec {
	g, _ := specGeneration(spec) // specs in the catalog are validated
	spec = withGeneration(spec, g)
	if g == 0 {
		p := map[string]string{GenerationParam: "0"}
		for k, v := range spec.Params {
			p[k] = v
		}
		spec.Params = p
	}
	return spec
}

// tombstoneCommand answers CLUSTER DROP NAME GENERATION (apply a tombstone
// a peer spreads) and CLUSTER DROPPED (this node's tombstones as JSON).
// ok is false for other commands.
func (cn *ClusterNode) tombstoneCommand(n *Node, cmd core.Command) (core.Reply, bool) {
	if !strings.EqualFold(cmd.Name, "CLUSTER") || len(cmd.Args) == 0 {
		return core.Reply{}, false
	}
	switch {
	case strings.EqualFold(string(cmd.Args[0]), "DROPPED") && len(cmd.Args) == 1:
		b, err := json.Marshal(n.Tombstones())
		if err != nil {
			return core.ErrorReply(core.Errorf(core.CodeErr, "CLUSTER DROPPED: %v", err)), true
		}
		return core.Bulk(b), true
	case strings.EqualFold(string(cmd.Args[0]), "DROP"):
		if len(cmd.Args) != 3 {
			return core.ErrorReply(core.Errorf(core.CodeErr, "syntax: CLUSTER DROP NAME GENERATION")), true
		}
		name := string(cmd.Args[1])
		g, err := strconv.ParseUint(string(cmd.Args[2]), 10, 64)
		if err != nil {
			return core.ErrorReply(core.Errorf(core.CodeErr, "CLUSTER DROP: generation %q: want a non-negative integer", cmd.Args[2])), true
		}
		changed, err := n.ApplyTombstone(name, g)
		if err != nil {
			return core.ErrorReply(core.Errorf(core.CodeErr, "CLUSTER DROP: %v", err)), true
		}
		if changed {
			// Flooding, as creations: a drop survives its first node
			// dying right after it.
			cn.forwardDrop(name, g)
			return core.Int(1), true
		}
		return core.Int(0), true
	}
	return core.Reply{}, false
}

// forwardDrop sends the tombstone (name, g) to every peer's client API, in
// the background; peers that miss it pull it later.
func (cn *ClusterNode) forwardDrop(name string, g uint64) {
	cn.toEveryPeer("forwarding a namespace drop failed; the peer will pull it", name, func(ctx context.Context, p ClusterPeer) error {
		_, err := clusterCall(ctx, p.Client, cn.c.clientDial(), "DROP", name, strconv.FormatUint(g, 10))
		return err
	})
}

// pullTombstones asks peer p for its tombstones and applies them.
func (cn *ClusterNode) pullTombstones(p ClusterPeer) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b, err := clusterCall(ctx, p.Client, cn.c.clientDial(), "DROPPED")
	if err != nil {
		return nil // unreachable: as listAt, the next pull retries
	}
	var ts map[string]uint64
	if err := json.Unmarshal(b, &ts); err != nil {
		return fmt.Errorf("CLUSTER DROPPED at %s: %w", p.ID, err)
	}
	var errs []error
	for name, g := range ts {
		if _, err := cn.ApplyTombstone(name, g); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// droppedBy reports whether this node's tombstones cover spec (a pulled
// spec of an incarnation that was dropped).
func (cn *ClusterNode) droppedBy(spec NamespaceSpec) bool {
	g, err := specGeneration(spec)
	if err != nil {
		return true // not a spec this node can create
	}
	t, ok := cn.Tombstones()[spec.Name]
	return ok && g <= t
}
