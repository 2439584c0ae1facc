package nodes

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusterCheckpointRestore: checkpoints of the three members of a
// quorum cluster, taken online, restored into new data directories, start
// a new cluster (same ids, new addresses) that holds every write
// acknowledged before the checkpoints and none after.
func TestClusterCheckpointRestore(t *testing.T) {
	tc := newTestCluster(t, "n1", "n2", "n3")
	tc.createAt(0, "kv", "quorum", nil)
	tc.waitNamespace("kv")
	for i := 0; i < 20; i++ {
		if _, err := tc.call(0, clusterOp{ns: "kv", w: 3}, "SET", fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	var restored []string
	for i, cn := range tc.nodes {
		cp := filepath.Join(root, "cp", tc.peers[i].ID)
		m, err := cn.Checkpoint(cp)
		if err != nil {
			t.Fatal(err)
		}
		included := map[string]bool{}
		for _, ns := range m.Namespaces {
			included[ns.Spec.Name] = ns.Included
		}
		if !included["kv"] || !included["default"] {
			t.Fatalf("manifest %+v: want kv and default included", m)
		}
		// Restore = copy into a new data directory.
		dst := filepath.Join(root, "new", tc.peers[i].ID)
		if err := CopyTree(cp, dst); err != nil {
			t.Fatal(err)
		}
		restored = append(restored, dst)
	}
	if _, err := tc.call(0, clusterOp{ns: "kv", w: 3}, "SET", "late", "x"); err != nil {
		t.Fatal(err)
	}
	for i := range tc.nodes {
		tc.stop(i)
	}

	addrs := freeAddrs(t, 6)
	nc := &testCluster{t: t, dirs: restored, nodes: make([]*ClusterNode, 3)}
	for i, p := range tc.peers {
		nc.peers = append(nc.peers, ClusterPeer{ID: p.ID, Client: addrs[2*i], Peer: addrs[2*i+1]})
	}
	for i := range nc.nodes {
		nc.start(i)
	}
	defer func() {
		for i := range nc.nodes {
			nc.stop(i)
		}
	}()
	for i := 0; i < 20; i++ {
		r, err := nc.call(1, clusterOp{ns: "kv", r: 3}, "GET", fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if got := replyStr(r); got != fmt.Sprintf("v%d", i) {
			t.Fatalf("k%d after restore = %q", i, got)
		}
	}
	r, err := nc.call(2, clusterOp{ns: "kv", r: 3}, "GET", "late")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Replies) == 0 || len(r.Replies[0].Str) != 0 {
		t.Fatalf("a write after the checkpoints is in the restore: %q", replyStr(r))
	}
}

// TestTarRoundTrip: WriteTar/ReadTar keep a checkpoint's files, and
// ReadTar refuses entries outside the target.
func TestTarRoundTrip(t *testing.T) {
	n, err := Start(Config{ID: "n1", Listen: "127.0.0.1:0", DataDir: t.TempDir(), CacheSize: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if n.cache == nil || n.cache.Size() != 32<<20 {
		t.Fatalf("shared cache not sized from Config.CacheSize")
	}
	cp := filepath.Join(t.TempDir(), "cp")
	if _, err := n.Checkpoint(cp); err != nil {
		t.Fatal(err)
	}
	n.Close(t.Context())
	var buf bytes.Buffer
	if err := WriteTar(&buf, cp); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "x")
	if err := ReadTar(bytes.NewReader(buf.Bytes()), dst); err != nil {
		t.Fatal(err)
	}
	n2, err := Start(Config{ID: "n1", Listen: "127.0.0.1:0", DataDir: dst})
	if err != nil {
		t.Fatalf("start on an untarred checkpoint: %v", err)
	}
	n2.Close(t.Context())
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	tw.WriteHeader(&tar.Header{Name: "../../x.json", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
	tw.Write([]byte("{}"))
	tw.Close()
	if err := ReadTar(&evil, filepath.Join(t.TempDir(), "y")); err == nil || !strings.Contains(err.Error(), "leaves the directory") {
		t.Fatalf("ReadTar of an entry outside its directory: %v", err)
	}
}
