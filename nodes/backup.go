package nodes

import (
	"archive/tar"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dialkv/dialkv/consistency/raft"
)

// CheckpointFormat is the version of a checkpoint's manifest.json.
const CheckpointFormat = 1

// checkpointDirName holds the retained checkpoints under the data
// directory (--checkpoint-every).
const checkpointDirName = "checkpoints"

// CheckpointTimeLayout names retained checkpoints: UTC, sortable.
const CheckpointTimeLayout = "20060102T150405.000Z"

// CheckpointManifest is manifest.json of a node checkpoint.
type CheckpointManifest struct {
	Format  int       `json:"format"`
	Node    string    `json:"node"`
	Created time.Time `json:"created"`
	// Namespaces lists every namespace of the node; Included says whether
	// its data is in the checkpoint (Pebble-backed: local, quorum,
	// causal, as Pebble checkpoints; raft: as exports of the shards this
	// node hosts, backup_raft.go); Reason says why not.
	Namespaces []CheckpointNamespace `json:"namespaces"`
	// Members is the cluster's member ids as the node knew them (CLUSTER
	// MEMBERS; empty outside a cluster).
	Members []string `json:"members,omitempty"`
	// RingVersion is the version of the node's member list (ring) when
	// the checkpoint started (0 outside a cluster).
	RingVersion uint64 `json:"ring_version,omitempty"`
}

// CheckpointNamespace is one namespace of a manifest.
type CheckpointNamespace struct {
	Spec     NamespaceSpec `json:"spec"`
	Included bool          `json:"included"`
	Reason   string        `json:"reason,omitempty"`
	// RaftShardCount and RaftShards (raft namespaces): the namespace's
	// shard count and the shards exported (those this node hosts).
	RaftShardCount int   `json:"raft_shard_count,omitempty"`
	RaftShards     []int `json:"raft_shards,omitempty"`
}

// checkpointer is a namespace service that can checkpoint its engine.
type checkpointer interface {
	Checkpoint(dir string) error
}

// Checkpoint implements checkpointer for replicated namespaces: the
// replica's engine as it is now (a replica's point-in-time copy; other
// replicas' copies are taken at other instants).
func (s *clusterService) Checkpoint(dir string) error { return s.eng.Checkpoint(dir) }

var _ checkpointer = (*clusterService)(nil)

// Checkpoint writes an online, consistent copy of the node into dir (which
// must not exist): every Pebble-backed namespace's checkpoint
// (DIR/ns/NAME/pebble: every batch committed before the call and nothing
// after it; sstables are hard-linked when dir is on the same file system),
// every raft namespace's exports of the shards this node hosts
// (backup_raft.go),
// the catalog of the namespaces included, and manifest.json. The result is
// a data directory `dialkv node --data` can start from. Namespace creation
// and drops wait while it runs.
func (n *Node) Checkpoint(dir string) (CheckpointManifest, error) {
	if n.cfg.Engine != "pebble" {
		return CheckpointManifest{}, errors.New("checkpoint: needs --engine pebble")
	}
	n.adminMu.Lock()
	defer n.adminMu.Unlock()
	m := CheckpointManifest{Format: CheckpointFormat, Node: n.cfg.ID, Created: time.Now().UTC(), Members: n.clusterMemberIDs()}
	m.RingVersion, _, _ = n.ringMark()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return m, fmt.Errorf("checkpoint: %w", err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return m, fmt.Errorf("checkpoint: %w", err)
	}
	var included []NamespaceSpec
	for _, ns := range n.namespaceList() {
		e := CheckpointNamespace{Spec: ns.spec}
		target := filepath.Join(dir, "ns", ns.spec.Name)
		if rs, ok := ns.svc.(*raft.Service); ok {
			// Not in the catalog: a new cluster creates it with its own
			// addresses and imports the exports.
			n.exportRaft(dir, rs, &e)
			m.Namespaces = append(m.Namespaces, e)
			continue
		}
		var cp func(string) error
		switch {
		case ns.pebble != nil:
			cp = ns.pebble.Checkpoint
		default:
			if c, ok := ns.svc.(checkpointer); ok {
				cp = c.Checkpoint
			}
		}
		if cp == nil {
			e.Reason = fmt.Sprintf("strategy %s keeps its state outside Pebble checkpoints", ns.spec.Strategy)
			m.Namespaces = append(m.Namespaces, e)
			continue
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			return m, fmt.Errorf("checkpoint %s: %w", ns.spec.Name, err)
		}
		if err := cp(filepath.Join(target, "pebble")); err != nil {
			return m, fmt.Errorf("checkpoint %s: %w", ns.spec.Name, err)
		}
		e.Included = true
		included = append(included, ns.spec)
		m.Namespaces = append(m.Namespaces, e)
	}
	if err := saveCatalog(dir, included, nil); err != nil {
		return m, fmt.Errorf("checkpoint: %w", err)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return m, fmt.Errorf("checkpoint: manifest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		return m, fmt.Errorf("checkpoint: manifest: %w", err)
	}
	return m, syncDir(dir)
}

// RetainedCheckpoint is one checkpoint kept under DATA/checkpoints.
type RetainedCheckpoint struct {
	Name string    `json:"name"`
	Time time.Time `json:"time"`
	Dir  string    `json:"dir"`
}

// ListCheckpoints lists the checkpoints under root (a node's
// DATA/checkpoints), oldest first; names that do not parse are skipped.
func ListCheckpoints(root string) ([]RetainedCheckpoint, error) {
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoints: %w", err)
	}
	var out []RetainedCheckpoint
	for _, e := range ents {
		t, err := time.Parse(CheckpointTimeLayout, e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), "manifest.json")); err != nil {
			continue // unfinished
		}
		out = append(out, RetainedCheckpoint{Name: e.Name(), Time: t, Dir: filepath.Join(root, e.Name())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// CheckpointAt returns the newest checkpoint under root taken at or before
// t (point-in-time recovery at checkpoint granularity).
func CheckpointAt(root string, t time.Time) (RetainedCheckpoint, error) {
	cps, err := ListCheckpoints(root)
	if err != nil {
		return RetainedCheckpoint{}, err
	}
	for i := len(cps) - 1; i >= 0; i-- {
		if !cps[i].Time.After(t) {
			return cps[i], nil
		}
	}
	if len(cps) == 0 {
		return RetainedCheckpoint{}, fmt.Errorf("checkpoints: none under %s", root)
	}
	return RetainedCheckpoint{}, fmt.Errorf("checkpoints: none at or before %s (oldest %s)", t.UTC().Format(time.RFC3339), cps[0].Time.Format(time.RFC3339))
}

// retainCheckpoint takes a checkpoint into DATA/checkpoints/<time> and
// removes the ones older than retain (keeping at least the newest).
func (n *Node) retainCheckpoint(retain time.Duration) (RetainedCheckpoint, error) {
	root := filepath.Join(n.cfg.DataDir, checkpointDirName)
	now := time.Now().UTC()
	name := now.Format(CheckpointTimeLayout)
	dir := filepath.Join(root, name)
	if _, err := n.Checkpoint(dir); err != nil {
		os.RemoveAll(dir)
		return RetainedCheckpoint{}, err
	}
	if retain > 0 {
		cps, err := ListCheckpoints(root)
		if err != nil {
			return RetainedCheckpoint{}, err
		}
		for _, c := range cps[:max(len(cps)-1, 0)] {
			if now.Sub(c.Time) > retain {
				if err := os.RemoveAll(c.Dir); err != nil {
					n.log.Warn("remove old checkpoint", "dir", c.Dir, "err", err)
				}
			}
		}
	}
	t, _ := time.Parse(CheckpointTimeLayout, name)
	return RetainedCheckpoint{Name: name, Time: t, Dir: dir}, nil
}

// checkpointLoop takes a retained checkpoint every interval.
func (n *Node) checkpointLoop(every, retain time.Duration) {
	defer n.bg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			if c, err := n.retainCheckpoint(retain); err != nil {
				n.log.Error("periodic checkpoint failed", "err", err)
			} else {
				n.log.Info("checkpoint taken", "dir", c.Dir)
			}
		}
	}
}

var backupSeq atomic.Int64

// startAdmin serves the admin HTTP API on cfg.AdminAddr:
//
//	GET  /v1/backup       a tar stream of a fresh checkpoint (Checkpoint)
//	POST /v1/checkpoints  take a retained checkpoint now
//	GET  /v1/checkpoints  list the retained checkpoints (JSON)
//	POST /v1/raft/import  import a raft shard's export (backup_raft.go)
//	GET|POST /v1/clock    the clock offset; ?offset=D sets it (clock.go)
//	/v1/fence, /v1/snapshot  the write fence and checkpoints under it (fence.go)
//
// On a node with TLS on the client listener (--tls-cert) it serves HTTPS
// with the same TLS settings, and with --auth-file every request needs a
// principal with admin on the whole cluster (security.HTTPAuth: a node
// certificate, or a client certificate, token or user with an admin grant
// on "*"); refusals are 401/403 and counted in
// dialkv_rejected_requests_total (docs/security.md).
func (n *Node) startAdmin() error {
	if n.cfg.CheckpointEvery > 0 {
		n.bg.Add(1)
		go n.checkpointLoop(n.cfg.CheckpointEvery, n.cfg.CheckpointRetain)
	}
	if n.cfg.AdminAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("node: admin listen %s: %w", n.cfg.AdminAddr, err)
	}
	n.aln = ln
	if n.cfg.Security.ClientTLS != nil {
		// The client listener's TLS settings: the same certificates are
		// required or accepted, and revoked ones fail the handshake.
		ln = tls.NewListener(ln, n.cfg.Security.ClientTLS.Clone())
	}
	n.removeStaleSnapshots()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/backup", n.serveBackup)
	n.registerFence(mux)
	mux.HandleFunc("POST /v1/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		c, err := n.retainCheckpoint(n.cfg.CheckpointRetain)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, c)
	})
	mux.HandleFunc("POST /v1/raft/import", n.serveRaftImport)
	mux.HandleFunc("/v1/clock", n.serveClock)
	mux.HandleFunc("GET /v1/checkpoints", func(w http.ResponseWriter, r *http.Request) {
		cps, err := ListCheckpoints(filepath.Join(n.cfg.DataDir, checkpointDirName))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, cps)
	})
	guard := n.cfg.Security.AdminHTTP()
	guard.OnReject = n.metrics.rejected
	guard.Logger = n.log
	n.adminSrv = &http.Server{Handler: guard.Wrap(mux), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		if err := n.adminSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin server stopped", "err", err)
		}
	}()
	return nil
}

// AdminAddr is the admin HTTP address ("" if none).
func (n *Node) AdminAddr() string {
	if n.aln == nil {
		return ""
	}
	return n.aln.Addr().String()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// serveBackup checkpoints into a temporary directory beside the data (so
// sstables are hard links), streams it as tar and removes it.
func (n *Node) serveBackup(w http.ResponseWriter, r *http.Request) {
	dir := filepath.Join(n.cfg.DataDir, fmt.Sprintf(".backup-%d-%d", os.Getpid(), backupSeq.Add(1)))
	defer os.RemoveAll(dir)
	if _, err := n.Checkpoint(dir); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	if err := WriteTar(w, dir); err != nil {
		n.log.Error("backup stream failed", "err", err)
	}
}

// WriteTar writes the regular files and directories under dir to w as a
// tar stream with paths relative to dir.
func WriteTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		return err
	})
	if err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	return tw.Close()
}

// ReadTar extracts a tar stream written by WriteTar into dir (created);
// entries that would land outside dir are refused.
func ReadTar(r io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("untar: %w", err)
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("untar: %w", err)
		}
		name := filepath.Clean(filepath.FromSlash(hdr.Name))
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("untar: entry %q leaves the directory", hdr.Name)
		}
		target := filepath.Join(dir, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("untar: %w", err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return fmt.Errorf("untar: %w", err)
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if err != nil {
				return fmt.Errorf("untar: %w", err)
			}
			_, err = io.Copy(f, tr)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("untar %s: %w", hdr.Name, err)
			}
		default:
			return fmt.Errorf("untar: entry %q: unsupported type %c", hdr.Name, hdr.Typeflag)
		}
	}
}

// CopyTree copies the regular files under src into dst (created; must not
// exist), for restoring a retained checkpoint into a new data directory
// (a copy, not hard links, so the restored node cannot change the
// checkpoint).
func CopyTree(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("copy: %s already exists", dst)
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	})
}
