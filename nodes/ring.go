package nodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/consistency/quorum"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/transport"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// Ring phases of a Membership (see consistency/quorum/rebalance.go for
// what each means to a quorum replica).
const (
	PhaseStable = "stable" // the ring is Members
	PhaseJoint  = "joint"  // Prev -> Members: writes and reads count quorums in both
	PhaseStream = "stream" // joint, and the old owners hand off changed segments
)

// membersFile is the persisted member list under the data directory.
const membersFile = "members.json"

// Membership is the cluster's versioned member list: the nodes of the
// quorum ring. Every member keeps the highest version it has seen
// (persisted in DATA/members.json) and pulls its peers' every
// ClusterConfig.CatalogSync; `dialkv admin add-node/remove-node` moves
// it through joint, stream and stable, one version each.
type Membership struct {
	Version uint64        `json:"version"`
	Phase   string        `json:"phase"`
	Members []ClusterPeer `json:"members"`
	Prev    []ClusterPeer `json:"prev,omitempty"`
	// Down, during a change, are the ids of previous members that leave
	// while down (`dialkv admin remove-node ID --down`): the driver does
	// not wait for them, and the quorum replicas hand their keys off from
	// the surviving copies (quorum.RingState.Down).
	Down []string `json:"down,omitempty"`
}

// validate checks a membership received from a peer or the admin tool.
func (m Membership) validate() error {
	if m.Version == 0 {
		return errors.New("membership: version 0")
	}
	if len(m.Members) == 0 {
		return errors.New("membership: no members")
	}
	switch m.Phase {
	case PhaseStable:
		if len(m.Prev) != 0 || len(m.Down) != 0 {
			return errors.New("membership: a stable ring has no previous or down members")
		}
	case PhaseJoint, PhaseStream:
		if len(m.Prev) == 0 {
			return fmt.Errorf("membership: phase %s needs the previous members", m.Phase)
		}
		for _, d := range m.Down {
			if !hasPeer(m.Prev, d) || hasPeer(m.Members, d) {
				return fmt.Errorf("membership: down node %s must be a previous member that leaves", d)
			}
		}
	default:
		return fmt.Errorf("membership: unknown phase %q (want stable, joint or stream)", m.Phase)
	}
	for _, l := range [][]ClusterPeer{m.Members, m.Prev} {
		seen := map[string]bool{}
		for _, p := range l {
			if p.ID == "" || p.Client == "" || p.Peer == "" {
				return fmt.Errorf("membership: incomplete member %+v", p)
			}
			if seen[p.ID] {
				return fmt.Errorf("membership: %s listed twice", p.ID)
			}
			seen[p.ID] = true
		}
	}
	return nil
}

func nodeIDs(ps []ClusterPeer) []consistency.NodeID {
	out := make([]consistency.NodeID, len(ps))
	for i, p := range ps {
		out[i] = consistency.NodeID(p.ID)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// ringState is what a quorum replica gets for this membership.
func (m Membership) ringState() quorum.RingState {
	s := quorum.RingState{Version: m.Version, Members: nodeIDs(m.Members)}
	if m.Phase != PhaseStable {
		s.Prev = nodeIDs(m.Prev)
		s.Stream = m.Phase == PhaseStream
		for _, d := range m.Down {
			s.Down = append(s.Down, consistency.NodeID(d))
		}
	}
	return s
}

// all lists the members and, during a change, the previous ones too.
func (m Membership) all() []ClusterPeer {
	out := append([]ClusterPeer(nil), m.Members...)
	for _, p := range m.Prev {
		if !hasPeer(out, p.ID) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// up lists all() without the Down nodes: those the driver talks to.
func (m Membership) up() []ClusterPeer {
	var out []ClusterPeer
	for _, p := range m.all() {
		if !slices.Contains(m.Down, p.ID) {
			out = append(out, p)
		}
	}
	return out
}

func hasPeer(ps []ClusterPeer, id string) bool {
	for _, p := range ps {
		if p.ID == id {
			return true
		}
	}
	return false
}

// loadMembership reads DATA/members.json; ok is false when there is none.
func loadMembership(dir string) (Membership, bool, error) {
	if dir == "" {
		return Membership{}, false, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, membersFile))
	if errors.Is(err, os.ErrNotExist) {
		return Membership{}, false, nil
	}
	if err != nil {
		return Membership{}, false, fmt.Errorf("membership: %w", err)
	}
	var m Membership
	if err := json.Unmarshal(b, &m); err != nil {
		return Membership{}, false, fmt.Errorf("membership %s: %w", filepath.Join(dir, membersFile), err)
	}
	if err := m.validate(); err != nil {
		return Membership{}, false, fmt.Errorf("%s: %w", filepath.Join(dir, membersFile), err)
	}
	return m, true, nil
}

func saveMembership(dir string, m Membership) error {
	if dir == "" {
		return nil
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	return writeDurable(dir, membersFile, append(b, '\n'))
}

// ringSetter is implemented by replicas whose placement follows the
// membership (quorum.Replica).
type ringSetter interface {
	SetRing(now time.Time, s quorum.RingState) error
	RingStatus() quorum.RingStatus
}

// membership returns the member list this node has.
func (c *cluster) membership() Membership {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.mem
}

// ringIDs are the ring's members, sorted: the replicas' Peers.
func (c *cluster) ringIDs() []consistency.NodeID { return nodeIDs(c.membership().Members) }

// sender returns the peer sender of a node. A node in neither member
// list (one started with --join, not added yet, which sends requests as
// a proxy and needs the answers) gets one from the peer address it
// advertises through gossip; nil when gossip does not know it either.
func (c *cluster) sender(id string) *transport.PeerSender {
	c.mu.RLock()
	s := c.senders[id]
	c.mu.RUnlock()
	if s != nil || c.gossip == nil {
		return s
	}
	for _, m := range c.gossip.members() {
		if m.ID == id && m.Peer != "" {
			c.addSenders([]ClusterPeer{{ID: m.ID, Client: m.Client, Peer: m.Peer}})
			c.mu.RLock()
			defer c.mu.RUnlock()
			return c.senders[id]
		}
	}
	return nil
}

// addSenders starts a sender for every node of ps that has none. Senders
// of nodes that left stay until the node stops (a removed node may still
// get hints and forwarded requests in flight).
func (c *cluster) addSenders(ps []ClusterPeer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range ps {
		if p.ID == c.self || c.senders[p.ID] != nil {
			continue
		}
		c.senders[p.ID] = transport.NewPeerSender(p.Peer, c.cfg.Name, transport.PeerSenderOptions{Logger: c.log.With("peer", p.ID), TLS: c.cfg.sec.PeerClientTLS, Conns: c.cfg.sec.PeerConns, MinBackoff: c.cfg.PeerMinBackoff, MaxBackoff: c.cfg.PeerMaxBackoff})
	}
}

// causalRinger is implemented by replicas that follow the member list
// through a region placement (causal.Replica).
type causalRinger interface {
	SetMembership(now time.Time, m causal.Membership) error
	RingStatus() causal.RingStatus
}

// causalMembership is what a causal replica whose regions parameter is
// spec gets for m: the ids, and every node's region (the parameter, or
// ClusterPeer.Region for a node it does not name).
func causalMembership(m Membership, spec string) (causal.Membership, error) {
	cm := causal.Membership{Version: m.Version, Members: nodeIDs(m.Members), Stream: m.Phase == PhaseStream}
	if m.Phase != PhaseStable {
		cm.Prev = nodeIDs(m.Prev)
		for _, d := range m.Down {
			cm.Down = append(cm.Down, consistency.NodeID(d))
		}
	}
	all := m.all()
	extra := map[consistency.NodeID]string{}
	for _, p := range all {
		if p.Region != "" {
			extra[consistency.NodeID(p.ID)] = p.Region
		}
	}
	place, err := causal.PlaceNodes(spec, nodeIDs(all), extra)
	if err != nil {
		return cm, fmt.Errorf("membership version %d: %w", m.Version, err)
	}
	cm.RegionOf = place
	return cm, nil
}

// causalParams returns a causal namespace's parameters with its regions
// rewritten to place exactly the current members (the replica's peers).
func (c *cluster) causalParams(params map[string]string) (map[string]string, error) {
	m := c.membership()
	cm, err := causalMembership(Membership{Version: m.Version, Phase: PhaseStable, Members: m.Members}, params["regions"])
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(params))
	for k, v := range params {
		out[k] = v
	}
	out["regions"] = causal.FormatRegions(cm.RegionOf)
	return out, nil
}

// setMembership adopts m if its version is above the one this node has:
// persisted first, then handed to every hosted replica that follows the
// ring. It reports whether m was adopted.
func (c *cluster) setMembership(m Membership) (bool, error) {
	if err := m.validate(); err != nil {
		return false, err
	}
	c.mu.Lock()
	if m.Version <= c.mem.Version {
		c.mu.Unlock()
		return false, nil
	}
	// A list some causal namespace cannot place (a node without a
	// region) is refused before it is persisted.
	for name, spec := range c.regionSpecs {
		if _, err := causalMembership(m, spec); err != nil {
			c.mu.Unlock()
			return false, fmt.Errorf("causal namespace %s: %w", name, err)
		}
	}
	// Ordering rule: persisted before any replica acts on it, so that a
	// restart resumes the change where the replicas were.
	if err := saveMembership(c.dataDir, m); err != nil {
		c.mu.Unlock()
		return false, err
	}
	c.mem = m
	hosts := make(map[string]*ReplicaHost, len(c.hosts))
	for n, h := range c.hosts {
		hosts[n] = h
	}
	c.mu.Unlock()
	c.addSenders(m.all())
	if c.gossip != nil {
		c.gossip.setPeers(m.all())
	}
	c.log.Info("membership changed", "version", m.Version, "phase", m.Phase, "members", FormatPeers(m.Members))
	for n, h := range hosts {
		c.applyRing(n, h)
	}
	return true, nil
}

// applyRing hands the current membership to one host's replica (a no-op
// for replicas that do not follow the ring, or that have this version).
// It reads the membership on the host's goroutine, so two calls racing
// apply versions in order.
func (c *cluster) applyRing(name string, h *ReplicaHost) {
	h.Call(func(r consistency.Replica) {
		if cr, ok := r.(causalRinger); ok {
			c.mu.RLock()
			spec := c.regionSpecs[name]
			c.mu.RUnlock()
			cm, err := causalMembership(c.membership(), spec)
			if err == nil {
				err = cr.SetMembership(time.Now(), cm)
			}
			if err != nil {
				c.log.Error("applying the member list to a causal replica failed", "namespace", name, "err", err)
			}
			return
		}
		rs, ok := r.(ringSetter)
		if !ok {
			return
		}
		if err := rs.SetRing(time.Now(), c.membership().ringState()); err != nil {
			c.log.Error("applying the member list to a replica failed", "err", err)
		}
	})
}

// RingReport is a node's answer to CLUSTER RING: its membership and, per
// quorum or causal namespace, its replica's ring version and pending
// handoff (causal: Strategy "causal", and Paused while it refuses clients).
type RingReport struct {
	Node       string                       `json:"node"`
	Membership Membership                   `json:"membership"`
	Namespaces map[string]quorum.RingStatus `json:"namespaces"`
}

func (c *cluster) ringReport() RingReport {
	rep := RingReport{Node: c.self, Membership: c.membership(), Namespaces: map[string]quorum.RingStatus{}}
	c.mu.RLock()
	hosts := map[string]*ReplicaHost{}
	for n, h := range c.hosts {
		hosts[n] = h
	}
	c.mu.RUnlock()
	for n, h := range hosts {
		h.Call(func(r consistency.Replica) {
			if cr, ok := r.(causalRinger); ok {
				s := cr.RingStatus()
				rep.Namespaces[n] = quorum.RingStatus{Version: s.Version, Pending: s.Pending, Queued: s.Queued, Inflight: s.Inflight, Moved: s.Moved, Paused: s.Paused, Strategy: "causal"}
				return
			}
			if rs, ok := r.(ringSetter); ok {
				rep.Namespaces[n] = rs.RingStatus()
			}
		})
	}
	return rep
}

// ringCommand answers CLUSTER RING (the RingReport as JSON) and CLUSTER
// RING SET JSON (adopt a Membership if newer; replies the version this
// node then has).
func (c *cluster) ringCommand(args [][]byte) core.Reply {
	if len(args) == 0 {
		b, err := json.Marshal(c.ringReport())
		if err != nil {
			return core.ErrorReply(core.Errorf(core.CodeErr, "CLUSTER RING: %v", err))
		}
		return core.Bulk(b)
	}
	if len(args) != 2 || !strings.EqualFold(string(args[0]), "SET") {
		return core.ErrorReply(core.Errorf(core.CodeErr, "syntax: CLUSTER RING [SET MEMBERSHIP_JSON]"))
	}
	var m Membership
	if err := json.Unmarshal(args[1], &m); err != nil {
		return core.ErrorReply(core.Errorf(core.CodeErr, "CLUSTER RING SET: %v", err))
	}
	if _, err := c.setMembership(m); err != nil {
		return core.ErrorReply(core.Errorf(core.CodeErr, "CLUSTER RING SET: %v", err))
	}
	return core.Int(int64(c.membership().Version))
}

// RingAt asks the node at addr for its CLUSTER RING report.
func RingAt(ctx context.Context, addr string, dopts transport.DialOptions) (RingReport, error) {
	var rep RingReport
	b, err := clusterCall(ctx, addr, dopts, "RING")
	if err != nil {
		return rep, err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("CLUSTER RING at %s: %w", addr, err)
	}
	return rep, nil
}

// SetRingAt hands the node at addr a membership (CLUSTER RING SET) and
// returns the version it then has.
func SetRingAt(ctx context.Context, addr string, dopts transport.DialOptions, m Membership) (uint64, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	b, err := clusterCall(ctx, addr, dopts, "RING", "SET", string(js))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(b), 10, 64)
}

// clusterCall sends CLUSTER ARGS... to a node's client API and returns a
// bulk or integer reply as bytes.
func clusterCall(ctx context.Context, addr string, dopts transport.DialOptions, args ...string) ([]byte, error) {
	conn, err := transport.Dial(ctx, addr, dopts)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	argv := make([][]byte, len(args))
	for i, a := range args {
		argv[i] = []byte(a)
	}
	resp, err := conn.Call(ctx, gen.NewRequestOptions(), &gen.Command{Name: "CLUSTER", Argv: argv})
	if err != nil {
		return nil, fmt.Errorf("CLUSTER %s at %s: %w", args[0], addr, err)
	}
	if len(resp.Replies) != 1 {
		return nil, fmt.Errorf("CLUSTER %s at %s: %d replies", args[0], addr, len(resp.Replies))
	}
	r := resp.Replies[0]
	switch r.Kind {
	case gen.ReplyKind_ERROR:
		return nil, fmt.Errorf("CLUSTER %s at %s: %s", args[0], addr, r.GetError().GetMessage())
	case gen.ReplyKind_INT:
		return []byte(strconv.FormatInt(r.GetIntVal(), 10)), nil
	}
	return r.Str, nil
}

// pullRings pulls every other node's member list at once (pullRing, one
// second each at most).
func (cn *ClusterNode) pullRings() {
	var wg sync.WaitGroup
	for _, p := range cn.c.membership().all() {
		if p.ID == cn.c.self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cn.pullRing(p)
		}()
	}
	wg.Wait()
}

// pullRing adopts a peer's member list when it is newer (a node that was
// down, or missed a push, catches up).
func (cn *ClusterNode) pullRing(p ClusterPeer) {
	if time.Now().Before(cn.c.ringPullFrom) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rep, err := RingAt(ctx, p.Client, cn.c.clientDial())
	if err != nil || rep.Membership.Version <= cn.c.membership().Version {
		return
	}
	if _, err := cn.c.setMembership(rep.Membership); err != nil {
		cn.warnOnce(fmt.Sprintf("ring/%s/%d", p.ID, rep.Membership.Version), "adopting a peer's member list failed", "peer", p.ID, "err", err)
	}
}

// Membership returns the member list this node has.
func (cn *ClusterNode) Membership() Membership { return cn.c.membership() }
