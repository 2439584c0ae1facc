package nodes

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/raft"
	"github.com/dialkv/dialkv/transport"
)

// TestRaftCandidates: which gossip members the rebalancer appends to a
// raft namespace's node list, with which Raft address.
func TestRaftCandidates(t *testing.T) {
	node := func(id, raftAddr string) raft.Node {
		return raft.Node{ID: consistency.NodeID(id), RaftAddr: raftAddr}
	}
	listed := []raft.Node{node("n1", "h:1"), node("n2", "h:2"), node("n3", "h:3")}
	member := func(id, state string, raftAddrs ...string) MemberInfo {
		return MemberInfo{ID: id, State: state, Client: id + ":c", Raft: raftAddrs}
	}
	for _, tt := range []struct {
		name    string
		members []MemberInfo
		others  map[string][]raft.Node
		want    []raftCandidate
	}{
		{"joining member offers an address", []MemberInfo{member("n1", "alive", "h:9"), member("n4", "alive", "h:4")}, nil,
			[]raftCandidate{{"n4", "n4:c", "h:4"}}},
		{"listed members are not candidates", []MemberInfo{member("n2", "alive", "h:7")}, nil, nil},
		{"down member is not", []MemberInfo{member("n4", "down", "h:4")}, nil, nil},
		{"member offering nothing is not", []MemberInfo{member("n4", "alive")}, nil, nil},
		{"no client address: not", []MemberInfo{{ID: "n4", State: "alive", Raft: []string{"h:4"}}}, nil, nil},
		{"address of a listed node is skipped", []MemberInfo{member("n4", "alive", "h:3", "h:4")}, nil,
			[]raftCandidate{{"n4", "n4:c", "h:4"}}},
		{"address the member uses in another namespace is skipped", []MemberInfo{member("n4", "alive", "h:4", "h:5")},
			map[string][]raft.Node{"other": {node("n1", "h:11"), node("n4", "h:4")}}, []raftCandidate{{"n4", "n4:c", "h:5"}}},
		{"another node's address elsewhere is no obstacle", []MemberInfo{member("n4", "alive", "h:4")},
			map[string][]raft.Node{"other": {node("n5", "h:4")}}, []raftCandidate{{"n4", "n4:c", "h:4"}}},
		{"every address used: not", []MemberInfo{member("n4", "alive", "h:4")},
			map[string][]raft.Node{"other": {node("n4", "h:4")}}, nil},
		{"sorted by ID", []MemberInfo{member("n6", "alive", "h:6"), member("n10", "alive", "h:10"), member("n5", "alive", "h:5")}, nil,
			[]raftCandidate{{"n10", "n10:c", "h:10"}, {"n5", "n5:c", "h:5"}, {"n6", "n6:c", "h:6"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := raftCandidates(tt.members, listed, tt.others); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("raftCandidates = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestRaftJoinByGossip: three cluster members hold a raft namespace (4
// shards x 3 replicas) while writers write. A fourth node starts with
// --join only (no static member list, no entry in the namespace's node
// list) and offers its Raft address through gossip; the rebalancer
// appends it to the namespace's nodes and moves replicas onto it until
// each node has 3. Every acknowledged write then reads back
// linearizably, and n4 serves: a client that knows only n4 writes and
// reads, and n4 hosts its replicas as voting members.
func TestRaftJoinByGossip(t *testing.T) {
	const shards, replicas, ns = 4, 3, "joined"
	c := newRaftTestCluster(t, "join", 4, RaftRebalanceOptions{Interval: 200 * time.Millisecond, Grace: 2 * time.Second, Settle: 500 * time.Millisecond})
	for i := range 3 {
		c.start(i, 3)
	}
	c.createRaft(ns, 3, 3, []int{1, 2}, map[string]string{"shards": fmt.Sprint(shards), "replicas": fmt.Sprint(replicas)})
	ctx, wc := c.raftClient(ns, 0, 3, 3*time.Minute, 5*time.Second)
	load := startRaftLoad(ctx, wc, 3)
	time.Sleep(500 * time.Millisecond)

	// n4 joins with --join only.
	c.join[3] = true
	begin := time.Now()
	c.start(3, 3)
	call := DialRaftCaller(transport.DialOptions{}, 3*time.Second)
	var perNode map[string]int
	for deadline := begin.Add(120 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("n4 did not get its replicas within 120 s: replicas per node %v; n1's node list %v (reproduce: go test -count=3 -run TestRaftJoinByGossip ./nodes/)",
				perNode, c.nodes[0].namespace(ns).svc.(*raft.Service).Nodes())
		}
		p, err := ReadRaftPlacement(ctx, call, ns, c.raftNodes(0, 4))
		if err != nil {
			continue
		}
		var ok bool
		if ok, perNode = balanced(p, shards, replicas, c.ids(0, 4), nil); ok {
			break
		}
	}
	joined := time.Since(begin)
	load.stop()

	// n4 serves: a client that knows only n4.
	c4, err := client.New(c.clientAddrs(3, 4), client.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if _, err := c4.Set(ctx, "via-n4", []byte("x")); err != nil {
		t.Fatalf("SET through n4: %v", err)
	}
	hosted, err := call(ctx, c.peers[3].Client, ns, "RAFT.HOSTED")
	if err != nil || len(hosted.Array) != 3 {
		t.Fatalf("RAFT.HOSTED at n4 = %+v, %v; want its 3 replicas", hosted.Array, err)
	}
	for _, h := range hosted.Array {
		var sh int
		var rid uint64
		var state string
		if _, err := fmt.Sscanf(string(h.Str), "%d %d %s", &sh, &rid, &state); err != nil || state != "member" {
			t.Fatalf("RAFT.HOSTED at n4: %q, want a voting member", h.Str)
		}
	}

	// Every acknowledged write, read back linearizably through n4 only.
	lost := load.checkAcked(t, ctx, c4, 50, map[string]string{"via-n4": "x"})
	var moves []string
	for _, cn := range c.nodes {
		for _, m := range cn.RaftMoves() {
			moves = append(moves, fmt.Sprintf("%s: %v in %v (err %v)", cn.c.self, m.Move, m.End.Sub(m.Start).Round(time.Millisecond), m.Err))
		}
	}
	t.Logf("n4 joined with --join only: balanced %v after its start; %d writes acknowledged, %d attempts failed, %d lost; moves: %v",
		joined.Round(time.Millisecond), len(load.acked), load.failed.Load(), lost, moves)
}

// TestRaftListenFlag: dialkv node's --raft-listen and its default.
func TestRaftListenFlag(t *testing.T) {
	for _, tt := range []struct {
		name    string
		f       memberFlags
		want    []string
		wantErr bool
	}{
		{"join only: peer port+1", memberFlags{join: "h:7382", peerListen: "127.0.0.1:7410"}, []string{"127.0.0.1:7411"}, false},
		{"static member: none by default", memberFlags{peers: "n1=a:1@a:2", peerListen: "127.0.0.1:7410"}, nil, false},
		{"off", memberFlags{join: "h:7382", peerListen: "127.0.0.1:7410", raftListen: "off"}, nil, false},
		{"a list", memberFlags{peers: "n1=a:1@a:2", raftListen: "127.0.0.1:7411, 127.0.0.1:7415"}, []string{"127.0.0.1:7411", "127.0.0.1:7415"}, false},
		{"bad address", memberFlags{join: "h:7382", raftListen: "nope"}, nil, true},
		{"bad default", memberFlags{join: "h:7382", peerListen: "127.0.0.1:x"}, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := raftListen(tt.f)
			if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("raftListen(%+v) = %v, %v; want %v (error %v)", tt.f, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
