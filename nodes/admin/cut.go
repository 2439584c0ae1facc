package admin

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/dialkv/dialkv/nodes"
)

// A cluster backup as one cut (docs/operations.md, "One instant"): every
// node raises its write fence (nodes/fence.go: new client writes are
// answered UNAVAILABLE, the writes in flight are waited for), then every
// node checkpoints (Pebble namespaces and the exports of the raft shards
// it hosts) into its data directory, then every fence is lowered, and only
// then are the checkpoints streamed here. All fences are raised before
// the first checkpoint starts and lowered after the last one ends, so no
// client write runs anywhere while any checkpoint is taken: they all hold
// the same writes. A fence that lapsed (its lease ended) or a node that
// restarted in between fails the backup.

// BackupOptions configure Backup.
type BackupOptions struct {
	// NoFence takes each node's checkpoint on its own, one node after
	// the other, with writes going on: each node's checkpoint and each
	// raft export is consistent, the backup is not one cut. It was the
	// only mode before the fence; the cut test uses it as its control.
	NoFence bool
	// FenceLease is each node's fence lease: the longest it refuses
	// writes if this tool dies (default nodes.DefaultFenceLease). The
	// backup fails if the checkpoints take longer.
	FenceLease time.Duration
	// beforeCheckpoint, if set, runs before a node's checkpoint is asked
	// for (tests: spread the checkpoints out in time).
	beforeCheckpoint func(id string)
	// noCausalHold (tests: the control of TestClusterBackupCausalRegions)
	// raises the fences with hold=false: causal replicas keep applying
	// remote writes during the cut, which is then not causally closed
	// with several regions.
	noCausalHold bool
}

// CutReport is how a backup's cut was taken (BackupManifest.Cut).
type CutReport struct {
	// Fence is the fence id; empty for a backup taken without a fence
	// (not one cut).
	Fence string `json:"fence,omitempty"`
	// Window is from the first fence request sent to the last lowering
	// answered: no node refused writes for this backup outside it.
	Window time.Duration `json:"window_ns"`
	// Checkpoints is the part of Window spent checkpointing (after every
	// fence was raised).
	Checkpoints time.Duration `json:"checkpoints_ns"`
	Nodes       []CutNode     `json:"nodes"`
}

// CutNode is one node's fence in a cut.
type CutNode struct {
	ID string `json:"id"`
	// Drain is how long raising its fence waited for writes in flight.
	Drain time.Duration `json:"drain_ns"`
	// Held is how long its fence was raised.
	Held time.Duration `json:"held_ns"`
	// Refused is the writes it refused meanwhile.
	Refused int64 `json:"refused"`
}

// fenceID is a fresh random fence id.
func fenceID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("fence id: %w", err)
	}
	return "bk-" + hex.EncodeToString(b[:]), nil
}

// call makes one body-less admin API request and decodes its JSON answer
// into out (nil: discarded); a status other than 200 is an error with the
// node's message.
func (a AdminHTTP) call(hc *http.Client, method, addr, path string, q url.Values, out any) error {
	resp, err := a.do(hc, method, addr, path+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// onEach runs f for every id at once and joins the errors.
func onEach(ids []string, f func(id string) error) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(id); err != nil {
				errs[i] = fmt.Errorf("%s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// backupCut takes the checkpoints of the nodes ids (admins: their admin
// addresses) as one cut and fetches them into out/ID; it returns the
// nodes' entries and the cut's report.
func (a AdminHTTP) backupCut(admins map[string]string, ids []string, out string, o BackupOptions) ([]BackupNode, *CutReport, error) {
	fid, err := fenceID()
	if err != nil {
		return nil, nil, err
	}
	lease := o.FenceLease
	if lease <= 0 {
		lease = nodes.DefaultFenceLease
	}
	// Every call is bounded by the lease plus slack: past it the fences
	// have lapsed and the backup fails anyway.
	hc := a.client(lease + 30*time.Second)
	fq := url.Values{"id": {fid}}
	rep := &CutReport{Fence: fid}
	var mu sync.Mutex
	drain := map[string]time.Duration{}
	// lowerAll lowers every fence (after a failure: best effort).
	lowerAll := func() {
		onEach(ids, func(id string) error { return a.call(hc, http.MethodDelete, admins[id], "/v1/fence", fq, nil) })
	}
	dropAll := func() {
		onEach(ids, func(id string) error {
			return a.call(hc, http.MethodDelete, admins[id], "/v1/snapshot", url.Values{"fence": {fid}}, nil)
		})
	}
	start := time.Now()
	err = onEach(ids, func(id string) error {
		var st nodes.FenceStatus
		q := url.Values{"id": {fid}, "lease": {lease.String()}}
		if o.noCausalHold {
			q.Set("hold", "false")
		}
		if err := a.call(hc, http.MethodPost, admins[id], "/v1/fence", q, &st); err != nil {
			return err
		}
		mu.Lock()
		drain[id] = st.Drain
		mu.Unlock()
		return nil
	})
	if err != nil {
		lowerAll()
		return nil, nil, fmt.Errorf("backup: raising the write fence: %w", err)
	}
	raised := time.Now()
	manifests := map[string]nodes.CheckpointManifest{}
	err = onEach(ids, func(id string) error {
		if o.beforeCheckpoint != nil {
			o.beforeCheckpoint(id)
		}
		var m nodes.CheckpointManifest
		if err := a.call(hc, http.MethodPost, admins[id], "/v1/snapshot", url.Values{"fence": {fid}}, &m); err != nil {
			return err
		}
		mu.Lock()
		manifests[id] = m
		mu.Unlock()
		return nil
	})
	checkpointed := time.Now()
	if err == nil {
		err = sameRing(ids, manifests)
	}
	if err != nil {
		lowerAll()
		dropAll()
		return nil, nil, fmt.Errorf("backup: checkpoint under the fence: %w", err)
	}
	// Lower every fence; each must still have been raised (not lapsed,
	// the node not restarted), or writes may have run between the
	// checkpoints.
	err = onEach(ids, func(id string) error {
		var st nodes.FenceStatus
		if err := a.call(hc, http.MethodDelete, admins[id], "/v1/fence", fq, &st); err != nil {
			return err
		}
		mu.Lock()
		rep.Nodes = append(rep.Nodes, CutNode{ID: id, Drain: drain[id], Held: st.Held, Refused: st.Refused})
		mu.Unlock()
		return nil
	})
	rep.Window, rep.Checkpoints = time.Since(start), checkpointed.Sub(raised)
	if err != nil {
		lowerAll()
		dropAll()
		return nil, nil, fmt.Errorf("backup: the write fence did not hold until the last checkpoint (not one cut; nothing kept): %w", err)
	}
	sort.Slice(rep.Nodes, func(i, j int) bool { return rep.Nodes[i].ID < rep.Nodes[j].ID })
	var out2 []BackupNode
	for i, id := range ids {
		dir := filepath.Join(out, id)
		if err := a.fetchTar(hc, admins[id], "/v1/snapshot?"+url.Values{"fence": {fid}}.Encode(), dir); err != nil {
			for _, rest := range ids[i:] {
				a.call(hc, http.MethodDelete, admins[rest], "/v1/snapshot", url.Values{"fence": {fid}}, nil)
			}
			return nil, nil, fmt.Errorf("backup %s: %w", id, err)
		}
		nm, err := readNodeManifest(dir, id)
		if err != nil {
			return nil, nil, err
		}
		if !nm.Created.Equal(manifests[id].Created) {
			return nil, nil, fmt.Errorf("backup %s: fetched another checkpoint than the one taken under the fence", id)
		}
		out2 = append(out2, BackupNode{ID: id, Admin: admins[id], Dir: id, Manifest: nm})
	}
	return out2, rep, nil
}

// sameRing checks that every node's checkpoint was taken at the same ring
// version: a node that had not seen a change yet, or had seen one the
// others had not, may hold data being handed off (nodes.ErrRingChange).
func sameRing(ids []string, ms map[string]nodes.CheckpointManifest) error {
	for _, id := range ids[1:] {
		if a, b := ms[ids[0]].RingVersion, ms[id].RingVersion; a != b {
			return fmt.Errorf("%w: %s checkpointed at ring version %d, %s at %d; back up once the change is done", nodes.ErrRingChange, ids[0], a, id, b)
		}
	}
	return nil
}

// fetchTar extracts the tar stream of path at the admin address addr into
// dir.
func (a AdminHTTP) fetchTar(hc *http.Client, addr, path, dir string) error {
	resp, err := a.do(hc, http.MethodGet, addr, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return nodes.ReadTar(resp.Body, dir)
}

// readNodeManifest reads the manifest of node id's checkpoint in dir and
// checks that it is id's.
func readNodeManifest(dir, id string) (nodes.CheckpointManifest, error) {
	var nm nodes.CheckpointManifest
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(b, &nm)
	}
	if err != nil {
		return nm, fmt.Errorf("backup %s: manifest: %w", id, err)
	}
	if nm.Node != id {
		return nm, fmt.Errorf("backup: the admin address given for %s belongs to node %s", id, nm.Node)
	}
	return nm, nil
}
