package nodes

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
)

// Raft namespaces in backups. A node checkpoint holds, for every raft
// namespace, an export (raft.Service.Export: a linearizable read, so every
// write acknowledged before it) of each shard the node hosts, in
// raft/NAME/shard-K.export; the namespace stays out of the checkpoint's
// catalog, because a raft namespace's parameters name its nodes' Raft and
// client addresses, which a new cluster does not share. A new cluster is
// restored by creating the namespace (same name and shard count, new
// addresses) and importing every shard's export through a node's admin API
// (POST /v1/raft/import; `dialkv admin restore --raft`).

// raftExportDir holds the raft exports of a checkpoint.
const raftExportDir = "raft"

// RaftExportTimeout bounds one shard's export.
const RaftExportTimeout = 30 * time.Second

// RaftExportPath is the path, relative to a checkpoint, of shard sh's
// export of raft namespace name.
func RaftExportPath(name string, sh int) string {
	return filepath.Join(raftExportDir, name, fmt.Sprintf("shard-%d.export", sh))
}

// exportRaft writes the exports of the shards of svc this node hosts into
// the checkpoint dir and records them in e. A shard that cannot be exported
// (no quorum within RaftExportTimeout) leaves the namespace out, with the
// reason; the checkpoint of the other namespaces goes on.
func (n *Node) exportRaft(dir string, svc *raft.Service, e *CheckpointNamespace) {
	e.RaftShardCount = svc.Shards()
	var shards []int
	for sh := 0; sh < svc.Shards(); sh++ {
		if !svc.Hosts(sh) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), RaftExportTimeout)
		b, err := svc.Export(ctx, sh)
		cancel()
		if err == nil {
			p := filepath.Join(dir, RaftExportPath(e.Spec.Name, sh))
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				err = writeFileSync(p, b)
			}
		}
		if err != nil {
			e.Reason = fmt.Sprintf("raft export of shard %d failed: %v", sh, err)
			n.log.Warn("checkpoint: raft namespace left out", "namespace", e.Spec.Name, "err", err)
			os.RemoveAll(filepath.Join(dir, raftExportDir, e.Spec.Name))
			return
		}
		shards = append(shards, sh)
	}
	e.Included, e.RaftShards = true, shards
}

// writeFileSync writes b to a new file p and fsyncs it.
func writeFileSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// clusterMemberIDs is the cluster's member ids as this node knows them
// (CLUSTER MEMBERS), or nil for a node outside a cluster.
func (n *Node) clusterMemberIDs() []string {
	if n.cfg.NodeCommand == nil {
		return nil
	}
	r, ok := n.cfg.NodeCommand(core.Cmd("CLUSTER", "MEMBERS"))
	if !ok || r.IsError() {
		return nil
	}
	var ids []string
	for _, line := range r.Array {
		if id, _, _ := strings.Cut(string(line.Str), " "); id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// ErrRaftImport is wrapped by the errors of RaftImport the caller can fix
// (wrong namespace, shard count or node); the import did not happen.
var ErrRaftImport = errors.New("raft import refused")

// RaftImport imports export into shard sh of raft namespace name, which
// must have shards shards (the exported namespace's count: a key's shard
// depends on it) and an empty shard sh hosted by this node.
func (n *Node) RaftImport(ctx context.Context, name string, sh, shards int, export []byte) error {
	ns := n.namespace(name)
	if ns == nil {
		return fmt.Errorf("%w: no namespace %q on %s (create it first, with strategy raft and the exported shard count)", ErrRaftImport, name, n.cfg.ID)
	}
	svc, ok := ns.svc.(*raft.Service)
	if !ok {
		return fmt.Errorf("%w: namespace %q is of strategy %s, not raft", ErrRaftImport, name, ns.spec.Strategy)
	}
	if svc.Shards() != shards {
		return fmt.Errorf("%w: namespace %q has %d shards, the export %d (keys would land on other shards)", ErrRaftImport, name, svc.Shards(), shards)
	}
	if sh < 0 || sh >= shards || !svc.Hosts(sh) {
		return fmt.Errorf("%w: node %s has no replica of shard %d of %q", ErrRaftImport, n.cfg.ID, sh, name)
	}
	if err := svc.Import(ctx, sh, export); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return fmt.Errorf("%w: %w", ErrRaftImport, err)
		}
		return err
	}
	return nil
}

// serveRaftImport is POST /v1/raft/import?namespace=NAME&shard=K&shards=N
// with an export as the body: 200 imported; 409 refused (ErrRaftImport:
// not hosted here, wrong namespace or shard count; or the shard is not
// empty); 400 bad parameters; 500 failed (the outcome may be unknown after a
// timeout).
func (n *Node) serveRaftImport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sh, err1 := strconv.Atoi(q.Get("shard"))
	shards, err2 := strconv.Atoi(q.Get("shards"))
	if q.Get("namespace") == "" || err1 != nil || err2 != nil {
		http.Error(w, "want ?namespace=NAME&shard=K&shards=N", http.StatusBadRequest)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, raft.MaxExport+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > raft.MaxExport {
		http.Error(w, fmt.Sprintf("export larger than %d bytes", raft.MaxExport), http.StatusRequestEntityTooLarge)
		return
	}
	err = n.RaftImport(r.Context(), q.Get("namespace"), sh, shards, body)
	var ce *core.Error
	switch {
	case err == nil:
		writeJSON(w, map[string]any{"namespace": q.Get("namespace"), "shard": sh, "bytes": len(body)})
	case errors.Is(err, ErrRaftImport), errors.As(err, &ce) && ce.Code == raft.CodeNotEmpty:
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}
