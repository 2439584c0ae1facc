package nodes

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
)

// TestRaftScrubRebuilds: a record of n2's raft state machine is damaged
// while n2 runs (a byte flipped in Pebble under the Store, as bit rot
// would; the Raft log and the other replicas are intact). n2's background
// scrub (Config.RaftScrubEvery, --raft-scrub-every) finds it without any
// client reading the key, quarantines the replica as the start-up check
// does (moved aside, rebuild-1.json), logs and counts it
// (dialkv_corruption_events_total{kind=store}), and the replica is rebuilt
// from n1 and n3. Writes keep going meanwhile; every acknowledged write,
// before and during the rebuild, is read back at the rebuilt node, locally
// and linearizably. Before the damage, scrub passes find nothing.
//
// Reproduce: go test -count=1 -run TestRaftScrubRebuilds ./nodes
func TestRaftScrubRebuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node raft cluster with a rebuild")
	}
	var logs syncBuffer
	tc := newTestCluster(t, "n1", "n2", "n3")
	// n2 scrubs every 300 ms at 50 records a second (pages of 50: a pass
	// over the 60+ records takes two pages, paced); n1 and n3 do not.
	tc.nodeCfg = func(i int, c *Config) {
		if i == 1 {
			c.RaftScrubEvery, c.RaftScrubRate = 300*time.Millisecond, 50
		}
	}
	tc.logw = &logs
	tc.stop(1)
	tc.start(1)
	clients := createRKV(tc)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, err := client.New(clients, client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rkv := client.With(ctx, client.Namespace("rkv"))
	const n = 60
	setKeys(t, c, rkv, n)
	n2, err := client.New([]string{clients[1]}, client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	stale := client.With(rkv, client.ReadMode("stale"))
	waitLocal := func(key, want string, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
			v, err := n2.Get(stale, key)
			if err == nil && string(v.Data) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("stale GET %s at n2 = %q, %v; want %q\nlogs:\n%s", key, v.Data, err, want, logs.String())
			}
		}
	}
	waitLocal(fmt.Sprint("k", n-1), fmt.Sprint("v", n-1), 20*time.Second)
	svc := nsService(tc.nodes[1].namespace("rkv")).(*raft.Service)

	// Control: sound records pass, pass after pass (a pass takes ~1.5 s).
	time.Sleep(2 * time.Second)
	if got := corruptionEvents(t, tc.nodes[1].Node, "rkv", "store"); got != 0 || len(svc.Corrupt()) != 0 {
		t.Fatalf("before any damage: corruption events %v, quarantined %v\nlogs:\n%s", got, svc.Corrupt(), logs.String())
	}

	// Writes go on while the replica is found corrupt and rebuilt.
	var mu sync.Mutex
	var acked []int
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.Set(rkv, fmt.Sprint("w", i), []byte(fmt.Sprint("x", i))); err == nil {
				mu.Lock()
				acked = append(acked, i)
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	if err := svc.DamageRecord(0, "k3"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(logs.String(), "raft replica rebuilt"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			close(stop)
			wg.Wait()
			t.Fatalf("no rebuild within 60 s of the damage\nlogs:\n%s", logs.String())
		}
	}
	time.Sleep(300 * time.Millisecond) // writes to the rebuilt replica too
	close(stop)
	wg.Wait()
	out := logs.String()
	if !strings.Contains(out, "raft replica's state machine is corrupt") || !strings.Contains(out, "found_by=scrub") {
		t.Fatalf("the corruption found by the scrub was not logged:\n%s", out)
	}
	if got := corruptionEvents(t, tc.nodes[1].Node, "rkv", "store"); got != 1 {
		t.Fatalf("dialkv_corruption_events_total{kind=store} at n2 = %v; want 1\nlogs:\n%s", got, out)
	}
	if !svc.Hosts(0) || len(svc.Corrupt()) != 0 {
		t.Fatalf("after the rebuild: hosts shard 0 %v, corrupt %v", svc.Hosts(0), svc.Corrupt())
	}
	// The state machine moved aside holds the damaged record: the damage
	// was on disk, and the scrub found that record.
	smDir := filepath.Join(tc.dirs[1], "ns", "rkv", "raft", "sm-1")
	aside, _ := filepath.Glob(smDir + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("the corrupt state machine was not kept aside: %v", aside)
	}
	eng, err := pebbleengine.Open(aside[0], pebbleengine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := core.NewStore(eng, core.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, verr := st.VerifyRecords(nil, 1<<20)
	eng.Close()
	if !errors.Is(verr, core.ErrCorruption) || !strings.Contains(verr.Error(), `"k3"`) {
		t.Fatalf("the state machine moved aside: %v; want k3's record corrupt", verr)
	}
	// Every acknowledged write, at the rebuilt node's own replica and
	// linearizably.
	for i := range n {
		waitLocal(fmt.Sprint("k", i), fmt.Sprint("v", i), 20*time.Second)
		if v, err := c.Get(rkv, fmt.Sprint("k", i)); err != nil || string(v.Data) != fmt.Sprint("v", i) {
			t.Fatalf("linearizable GET k%d = %q, %v", i, v.Data, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged during the rebuild")
	}
	for _, i := range acked {
		waitLocal(fmt.Sprint("w", i), fmt.Sprint("x", i), 20*time.Second)
		if v, err := c.Get(rkv, fmt.Sprint("w", i)); err != nil || string(v.Data) != fmt.Sprint("x", i) {
			t.Fatalf("linearizable GET w%d = %q, %v", i, v.Data, err)
		}
	}
	t.Logf("%d writes acknowledged during the scrub and rebuild, all read back", len(acked))
}
