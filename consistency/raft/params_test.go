package raft

import (
	"strings"
	"testing"
	"time"
)

func TestConfigFromParams(t *testing.T) {
	good := map[string]string{"nodes": "n1,n2,n3", "raft-addrs": "h:1, h:2 ,h:3", "client-addrs": "c:1,c:2,c:3",
		"shards": "4", "replicas": "3", "rtt": "5ms", "redirect": "false", "repropose": "150ms"}
	cfg, err := ConfigFromParams("n2", "/d", good)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Nodes) != 3 || cfg.Nodes[1].RaftAddr != "h:2" || cfg.Nodes[2].ClientAddr != "c:3" ||
		cfg.Shards != 4 || cfg.RTT != 5*time.Millisecond || cfg.RedirectToLeader || cfg.Storage != "pebble" || cfg.NodeID != "n2" || cfg.Dir != "/d" ||
		cfg.ReproposeAfter != 150*time.Millisecond {
		t.Errorf("config %+v", cfg)
	}
	for _, v := range []string{TransportRaftls, TransportDragonboat} {
		p := map[string]string{"nodes": "n1", "raft-addrs": "h:1", "transport": v}
		if cfg, err := ConfigFromParams("n1", "/d", p); err != nil || cfg.Transport != v {
			t.Errorf("transport %s: %q, %v", v, cfg.Transport, err)
		}
	}
	for _, tc := range []struct {
		name, key, val, want string
	}{
		{"no nodes", "nodes", "", "nodes is required"},
		{"address count", "raft-addrs", "h:1", "raft-addrs has 1"},
		{"client count", "client-addrs", "c:1,c:2", "client-addrs has 2"},
		{"zero shards", "shards", "0", "at least 1"},
		{"bad replicas", "replicas", "4", "want 3 or 5"},
		{"bad rtt", "rtt", "fast", "rtt"},
		{"unknown", "colour", "blue", "unknown parameter"},
		{"storage", "storage", "tape", "want pebble or memory"},
		{"repropose", "repropose", "0s", "positive duration or off"},
		{"transport", "transport", "udp", "want raftls or dragonboat"},
	} {
		p := map[string]string{}
		for k, v := range good {
			p[k] = v
		}
		p[tc.key] = tc.val
		if _, err := ConfigFromParams("n1", "/d", p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
}
