package nodes

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/dialkv/dialkv/core"
)

// TestLocalWALPrefill checks that a local namespace's WAL is written ahead
// with zeros (whole MiB) under --fsync always, where it is synced once per
// group commit, and left as Pebble writes it otherwise.
func TestLocalWALPrefill(t *testing.T) {
	for _, tc := range []struct {
		fsync   core.SyncPolicy
		prefill bool
	}{
		{core.SyncAlways, true},
		{core.SyncNever, false},
	} {
		t.Run(tc.fsync.String(), func(t *testing.T) {
			dir := t.TempDir()
			n := startNode(t, Config{Engine: "pebble", DataDir: dir, Fsync: tc.fsync})
			c := dial(t, n.Addr())
			if _, err := c.Call(context.Background(), noOpts(), cmd("SET", "k", "v")); err != nil {
				t.Fatal(err)
			}
			wals, err := filepath.Glob(filepath.Join(dir, "ns", DefaultNamespace, "pebble", "*.log"))
			if err != nil || len(wals) == 0 {
				t.Fatalf("no WAL: %v", err)
			}
			for _, w := range wals {
				st, err := os.Stat(w)
				if err != nil {
					t.Fatal(err)
				}
				whole := st.Size() > 0 && st.Size()%walPrefill == 0
				if whole != tc.prefill {
					t.Errorf("%s: %d bytes; written ahead to whole MiB: %v, want %v", filepath.Base(w), st.Size(), whole, tc.prefill)
				}
			}
		})
	}
}
