package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/nodes"
)

// BackupRaft is one raft namespace of a cluster backup: its spec as the
// backed-up cluster had it, its shard count, and for each shard the file
// (relative to the backup directory) holding the newest export of it.
type BackupRaft struct {
	Spec   nodes.NamespaceSpec `json:"spec"`
	Shards int                 `json:"shards"`
	Files  []string            `json:"files"` // index: shard; "" when no node exported it
}

// Complete says whether every shard has an export.
func (r BackupRaft) Complete() bool {
	for _, f := range r.Files {
		if f == "" {
			return false
		}
	}
	return len(r.Files) == r.Shards
}

// raftIndex picks, for every raft namespace in the nodes' checkpoints and
// every shard, the newest export among the nodes that host the shard (each
// export holds every write acknowledged before it was taken).
func raftIndex(ns []BackupNode) []BackupRaft {
	byName := map[string]*BackupRaft{}
	newest := map[string][]time.Time{}
	for _, n := range ns {
		for _, e := range n.Manifest.Namespaces {
			if e.Spec.Strategy != "raft" {
				continue
			}
			r := byName[e.Spec.Name]
			if r == nil {
				r = &BackupRaft{Spec: e.Spec, Shards: e.RaftShardCount, Files: make([]string, e.RaftShardCount)}
				byName[e.Spec.Name] = r
				newest[e.Spec.Name] = make([]time.Time, e.RaftShardCount)
			}
			if !e.Included {
				continue
			}
			for _, sh := range e.RaftShards {
				if sh < len(r.Files) && !n.Manifest.Created.Before(newest[e.Spec.Name][sh]) {
					r.Files[sh] = filepath.ToSlash(filepath.Join(n.Dir, nodes.RaftExportPath(e.Spec.Name, sh)))
					newest[e.Spec.Name][sh] = n.Manifest.Created
				}
			}
		}
	}
	out := make([]BackupRaft, 0, len(byName))
	for _, r := range byName {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out
}

// checkCluster checks that a backup is of a whole cluster: every member
// any node named is in it, and every raft shard has an export.
func checkCluster(m BackupManifest) error {
	have := map[string]bool{}
	for _, n := range m.Nodes {
		have[n.ID] = true
	}
	var problems []string
	missing := map[string]bool{}
	for _, n := range m.Nodes {
		for _, id := range n.Manifest.Members {
			if !have[id] && !missing[id] {
				missing[id] = true
				problems = append(problems, "member "+id+" is not in the backup (give its admin address)")
			}
		}
	}
	for _, r := range m.Raft {
		for sh, f := range r.Files {
			if f == "" {
				problems = append(problems, fmt.Sprintf("raft namespace %s: no export of shard %d", r.Spec.Name, sh))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("backup --cluster: incomplete: %s", strings.Join(problems, "; "))
	}
	return nil
}

// RaftRestore imports every raft namespace of the cluster backup at from
// (or only those named in only) into a running cluster through its nodes'
// admin APIs (admins: addresses). Each namespace must exist there with the
// backup's shard count and empty shards: create it first (its parameters
// name the new cluster's addresses). Each shard is imported through the
// first node that hosts it. out receives one line per shard. It speaks
// plain HTTP without credentials (AdminHTTP.RaftRestore for secured nodes).
func RaftRestore(from string, admins []string, only []string, out io.Writer) error {
	return AdminHTTP{}.RaftRestore(from, admins, only, out)
}

// RaftRestore is the package's RaftRestore through a's connection settings.
func (a AdminHTTP) RaftRestore(from string, admins []string, only []string, out io.Writer) error {
	m, err := readManifest(from)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, n := range only {
		want[n] = true
	}
	hc := a.client(2 * time.Minute)
	done := 0
	for _, r := range m.Raft {
		if len(want) > 0 && !want[r.Spec.Name] {
			continue
		}
		delete(want, r.Spec.Name)
		if !r.Complete() {
			return fmt.Errorf("restore raft %s: the backup lacks an export of some shard (files %v)", r.Spec.Name, r.Files)
		}
		for sh, f := range r.Files {
			b, err := os.ReadFile(filepath.Join(from, filepath.FromSlash(f)))
			if err != nil {
				return fmt.Errorf("restore raft %s shard %d: %w", r.Spec.Name, sh, err)
			}
			at, err := a.importShard(hc, admins, r.Spec.Name, sh, r.Shards, b)
			if err != nil {
				return fmt.Errorf("restore raft %s shard %d: %w", r.Spec.Name, sh, err)
			}
			fmt.Fprintf(out, "raft %s shard %d/%d: %d bytes imported through %s\n", r.Spec.Name, sh, r.Shards, len(b), at)
			done++
		}
	}
	for n := range want {
		return fmt.Errorf("restore raft: no raft namespace %q in the backup", n)
	}
	if done == 0 {
		return errors.New("restore raft: the backup has no raft namespace")
	}
	return nil
}

// importShard posts an export to the admin APIs in turn until one imports
// it: only the shard's leader does; the others (and nodes without a
// replica of the shard) answer 409 and the next is tried, in rounds for up
// to a minute (a leader is being elected).
func (a AdminHTTP) importShard(hc *http.Client, admins []string, name string, sh, shards int, b []byte) (string, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		at, retry, err := a.importRound(hc, admins, name, sh, shards, b)
		if !retry || time.Now().After(deadline) {
			return at, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// importRound is one round of importShard; retry says whether every node
// refused without importing (409, not NOTEMPTY).
func (a AdminHTTP) importRound(hc *http.Client, admins []string, name string, sh, shards int, b []byte) (at string, retry bool, err error) {
	var errs []string
	retry = true
	for _, addr := range admins {
		path := "/v1/raft/import?" + url.Values{"namespace": {name}, "shard": {strconv.Itoa(sh)}, "shards": {strconv.Itoa(shards)}}.Encode()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		req, err := a.request(ctx, http.MethodPost, addr, path, bytes.NewReader(b))
		if err != nil {
			cancel()
			return "", false, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			cancel()
			errs = append(errs, fmt.Sprintf("%s: %v", addr, err))
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		text := strings.TrimSpace(string(msg))
		switch {
		case resp.StatusCode == http.StatusOK:
			return addr, false, nil
		case resp.StatusCode == http.StatusConflict && strings.Contains(text, "NOTEMPTY"):
			return "", false, fmt.Errorf("%s: %s", addr, text)
		case resp.StatusCode != http.StatusConflict:
			// Failed, possibly after proposing (a timeout): do not
			// propose again elsewhere.
			return "", false, fmt.Errorf("%s: %s", addr, statusErr(resp, msg))
		}
		errs = append(errs, fmt.Sprintf("%s: %s", addr, text))
	}
	return "", true, fmt.Errorf("no node imported it: %s", strings.Join(errs, "; "))
}
