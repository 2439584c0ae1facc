package pebbleengine

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"pgregory.net/rapid"

	"github.com/dialkv/dialkv/core"
)

// TestStoreCrashRecovery is the crash test one level up: random commands
// on a Store over Pebble, a crash clone at the end, a reopen. The reopened
// Store's whole key space (data, expiry queue, indexes, version counter)
// must equal that of a memory Store after some prefix of the commands, at
// least as long as the durable ones; and the recovered Store must then
// answer further commands exactly like that memory Store, versions
// included. Replay with -rapid.seed=N.
func TestStoreCrashRecovery(t *testing.T) {
	names := knownTemplates()
	rapid.Check(t, func(rt *rapid.T) {
		policy := rapid.SampledFrom([]core.SyncPolicy{core.SyncAlways, core.SyncNever}).Draw(rt, "policy")
		fs := vfs.NewCrashableMem()
		e, err := Open("db", Options{FS: fs, Sync: policy})
		if err != nil {
			rt.Fatal(err)
		}
		ps, err := core.NewStore(e, core.Limits{})
		if err != nil {
			rt.Fatal(err)
		}
		now := time.Unix(1_700_000_000, 0).UTC()
		var cmds []core.Command
		var times []time.Time
		durable := 0
		for i, n := 0, rapid.IntRange(1, 60).Draw(rt, "n"); i < n; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 800).Draw(rt, "advance ms")) * time.Millisecond)
			c := drawCommand(rt, names)
			cmds, times = append(cmds, c), append(times, now)
			ps.Apply(now, c)
			if policy == core.SyncAlways {
				durable = i + 1
			} else if rapid.IntRange(0, 9).Draw(rt, "sync") == 0 {
				if err := e.Sync(); err != nil {
					rt.Fatal(err)
				}
				durable = i + 1
			}
		}
		pct := rapid.SampledFrom([]int{0, 50, 100}).Draw(rt, "unsynced kept %")
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(uint64(len(cmds)), 1))})
		_ = e.Close()

		r, err := Open("db", Options{FS: crashed, Sync: policy})
		if err != nil {
			rt.Fatalf("reopen: %v", err)
		}
		defer r.Close()
		rs, err := core.NewStore(r, core.Limits{})
		if err != nil {
			rt.Fatalf("store over the recovered engine: %v", err)
		}
		var got bytes.Buffer
		if err := rs.SaveSnapshot(&got); err != nil {
			rt.Fatalf("snapshot after recovery: %v", err)
		}

		// The memory store's key space after each prefix; keep the longest
		// prefix that matches.
		ms, _ := core.NewStore(core.NewMemEngine(), core.Limits{})
		m := -1
		for i := 0; i <= len(cmds); i++ {
			if i > 0 {
				ms.Apply(times[i-1], cmds[i-1])
			}
			var snap bytes.Buffer
			if err := ms.SaveSnapshot(&snap); err != nil {
				rt.Fatal(err)
			}
			if bytes.Equal(snap.Bytes(), got.Bytes()) {
				m = i
			}
		}
		if m < 0 {
			rt.Fatalf("%s, %d%% unsynced kept: the recovered state is no prefix of the %d commands", policy, pct, len(cmds))
		}
		if m < durable {
			rt.Fatalf("%s, %d%% unsynced kept: recovered the state after %d commands, but %d were durable", policy, pct, m, durable)
		}
		// Continue both from the recovered prefix.
		ref, _ := core.NewStore(core.NewMemEngine(), core.Limits{})
		for i := 0; i < m; i++ {
			ref.Apply(times[i], cmds[i])
		}
		for i := 0; i < 15; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 800).Draw(rt, "advance ms")) * time.Millisecond)
			c := drawCommand(rt, names)
			if a, b := renderReply(ref.Apply(now, c)), renderReply(rs.Apply(now, c)); a != b {
				rt.Fatalf("after recovery, %s:\n  mem    %s\n  pebble %s", c, a, b)
			}
		}
	})
}
