package nodes

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// TestRebalanceFlags: dialkv node's --raft-rebalance* flags fill the raft
// rebalancer's options and are in --help.
func TestRebalanceFlags(t *testing.T) {
	for _, tt := range []struct {
		name    string
		args    []string
		want    RaftRebalanceOptions
		wantErr bool
	}{
		{"defaults", nil, RaftRebalanceOptions{Interval: time.Second, Grace: 10 * time.Second, Settle: 3 * time.Second, MoveTimeout: time.Minute}, false},
		{"off", []string{"--raft-rebalance=false"}, RaftRebalanceOptions{Off: true, Interval: time.Second, Grace: 10 * time.Second, Settle: 3 * time.Second, MoveTimeout: time.Minute}, false},
		{"all set", []string{"--raft-rebalance=true", "--raft-rebalance-interval=200ms", "--raft-rebalance-grace=30s", "--raft-rebalance-settle=1s", "--raft-move-timeout=2m"},
			RaftRebalanceOptions{Interval: 200 * time.Millisecond, Grace: 30 * time.Second, Settle: time.Second, MoveTimeout: 2 * time.Minute}, false},
		{"bad bool", []string{"--raft-rebalance=maybe"}, RaftRebalanceOptions{}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("node", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o := registerRebalanceFlags(fs)
			err := fs.Parse(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parse %v: %v (want error %v; rerun: go test -run TestRebalanceFlags ./nodes)", tt.args, err, tt.wantErr)
			}
			if err == nil && *o != tt.want {
				t.Fatalf("parse %v = %+v, want %+v", tt.args, *o, tt.want)
			}
		})
	}
	var help bytes.Buffer
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.SetOutput(&help)
	registerRebalanceFlags(fs)
	fs.PrintDefaults()
	for _, f := range []string{"raft-rebalance", "raft-rebalance-interval", "raft-rebalance-grace", "raft-rebalance-settle", "raft-move-timeout"} {
		if !strings.Contains(help.String(), "-"+f+" ") && !strings.Contains(help.String(), "-"+f+"\n") {
			t.Errorf("--help does not list --%s:\n%s", f, help.String())
		}
	}
}
