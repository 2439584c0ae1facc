package admin

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
)

func startNode(t *testing.T, id, data string) *nodes.Node {
	t.Helper()
	n, err := nodes.Start(nodes.Config{ID: id, Listen: "127.0.0.1:0", DataDir: data, Fsync: core.SyncAlways, AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func stop(t *testing.T, n *nodes.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func put(t *testing.T, addr, ns string, from, to int) {
	t.Helper()
	c, err := client.New([]string{addr}, client.WithNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := from; i < to; i++ {
		if _, err := c.Set(context.Background(), fmt.Sprintf("k%03d", i), []byte(fmt.Sprintf("v%d", i))); err != nil {
			t.Fatal(err)
		}
	}
}

// contents reads k000..k(n-1) and returns the keys found with their values.
func contents(t *testing.T, addr, ns string, n int, opts ...client.Option) map[string]string {
	t.Helper()
	c, err := client.New([]string{addr}, append([]client.Option{client.WithNamespace(ns)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := map[string]string{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k%03d", i)
		v, err := c.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if v.Found {
			out[k] = string(v.Data)
		}
	}
	return out
}

func want(from, to int) map[string]string {
	out := map[string]string{}
	for i := from; i < to; i++ {
		out[fmt.Sprintf("k%03d", i)] = fmt.Sprintf("v%d", i)
	}
	return out
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestBackupRestore: two running nodes with a local namespace each are
// backed up online through their admin APIs, written to afterwards, and
// restored into new data directories: the new nodes hold exactly what was
// acknowledged before the backup.
func TestBackupRestore(t *testing.T) {
	root := t.TempDir()
	n1 := startNode(t, "n1", filepath.Join(root, "n1"))
	n2 := startNode(t, "n2", filepath.Join(root, "n2"))
	c, err := client.New([]string{n2.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateNamespace(context.Background(), client.NamespaceSpec{Name: "extra", Strategy: "local"}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	put(t, n1.Addr(), "default", 0, 50)
	put(t, n2.Addr(), "extra", 0, 30)
	out := filepath.Join(root, "backup")
	m, err := Backup(map[string]string{"n1": n1.AdminAddr(), "n2": n2.AdminAddr()}, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Nodes) != 2 {
		t.Fatalf("manifest nodes = %+v", m.Nodes)
	}
	// Written after the backup: not in it.
	put(t, n1.Addr(), "default", 50, 60)
	put(t, n2.Addr(), "extra", 30, 40)
	stop(t, n1)
	stop(t, n2)

	for _, tc := range []struct {
		node, ns string
		want     map[string]string
	}{{"n1", "default", want(0, 50)}, {"n2", "extra", want(0, 30)}} {
		data := filepath.Join(root, "restored-"+tc.node)
		if _, err := Restore(out, tc.node, time.Time{}, data); err != nil {
			t.Fatal(err)
		}
		r := startNode(t, tc.node, data)
		got := contents(t, r.Addr(), tc.ns, 60)
		stop(t, r)
		if !sameMap(got, tc.want) {
			t.Errorf("%s restored %d keys, want %d (%v)", tc.node, len(got), len(tc.want), got)
		}
	}
	if _, err := Restore(out, "n9", time.Time{}, filepath.Join(root, "x")); err == nil {
		t.Error("restore of a node not in the backup succeeded")
	}
	if _, err := Restore(out, "n1", time.Time{}, filepath.Join(root, "restored-n1")); err == nil {
		t.Error("restore into an existing directory succeeded")
	}
}

// TestPointInTime: retained checkpoints taken through the admin API;
// restoring at a time between two of them gives the earlier one's state.
func TestPointInTime(t *testing.T) {
	root := t.TempDir()
	n := startNode(t, "n1", filepath.Join(root, "n1"))
	take := func() {
		resp, err := http.Post("http://"+n.AdminAddr()+"/v1/checkpoints", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("checkpoint: %s", resp.Status)
		}
	}
	put(t, n.Addr(), "default", 0, 10)
	take()
	time.Sleep(20 * time.Millisecond)
	between := time.Now()
	time.Sleep(20 * time.Millisecond)
	put(t, n.Addr(), "default", 10, 20)
	take()
	stop(t, n)
	cps := filepath.Join(root, "n1", "checkpoints")
	for _, tc := range []struct {
		name string
		at   time.Time
		want map[string]string
	}{{"between", between, want(0, 10)}, {"now", time.Now(), want(0, 20)}} {
		data := filepath.Join(root, "pitr-"+tc.name)
		if _, err := Restore(cps, "", tc.at, data); err != nil {
			t.Fatal(err)
		}
		r := startNode(t, "n1", data)
		got := contents(t, r.Addr(), "default", 20)
		stop(t, r)
		if !sameMap(got, tc.want) {
			t.Errorf("%s: restored %d keys, want %d", tc.name, len(got), len(tc.want))
		}
	}
	if _, err := Restore(cps, "", between.Add(-time.Hour), filepath.Join(root, "too-early")); err == nil {
		t.Error("restore before the oldest checkpoint succeeded")
	}
}

func TestHolders(t *testing.T) {
	members := []string{"n1", "n2", "n3", "n4", "n5"}
	for _, tc := range []struct {
		spec  NamespaceSpec
		nHold int
	}{
		{NamespaceSpec{Name: "q", Strategy: "quorum", Params: map[string]string{"n": "3"}}, 3},
		{NamespaceSpec{Name: "r", Strategy: "raft", Params: map[string]string{"nodes": "n1,n2,n3,n4,n5", "shards": "4", "replicas": "3"}}, 3},
		{NamespaceSpec{Name: "l", Strategy: "local"}, 0},
	} {
		what, holders, err := Holders(tc.spec, members, "user:42")
		if err != nil {
			t.Fatalf("%s: %v", tc.spec.Strategy, err)
		}
		if len(holders) != tc.nHold {
			t.Errorf("%s: %s %v, want %d holders", tc.spec.Strategy, what, holders, tc.nHold)
		}
		// Deterministic: the same answer twice.
		_, again, _ := Holders(tc.spec, members, "user:42")
		if strings.Join(again, ",") != strings.Join(holders, ",") {
			t.Errorf("%s: holders changed: %v then %v", tc.spec.Strategy, holders, again)
		}
	}
	if _, _, err := Holders(NamespaceSpec{Strategy: "quorum"}, nil, "k"); err == nil {
		t.Error("quorum without members: no error")
	}
}

func TestHelpAndUsage(t *testing.T) {
	for _, c := range commands() {
		var out, errb bytes.Buffer
		if code := Main([]string{c.name, "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Usage: dialkv admin "+c.name) {
			t.Errorf("%s --help: exit %d, %q %q", c.name, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := Main([]string{"restore", "--from", "x"}, &out, &errb); code != 2 {
		t.Errorf("restore without --data: exit %d", code)
	}
	if code := Main([]string{"add-node"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "add-node ID") {
		t.Errorf("add-node without an id: exit %d %q", code, errb.String())
	}
}
