package raft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	pebblevfs "github.com/cockroachdb/pebble/v2/vfs"

	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/core/pebbleengine"
)

// Rebuilding a corrupt replica. When a node starts, the Pebble state
// machine of every replica it is about to restart is checked: opened, its
// applied-index and deduplication records read, and every record decoded
// (each carries a CRC-32C; Pebble checks its blocks). A state machine that
// fails with core.ErrCorruption cannot simply be restarted empty: Dragonboat
// would replay only the entries after its last snapshot onto it (and it
// refuses a state machine behind its snapshot), nor may the replica's Raft
// log be wiped while the replica is a member (it would forget its votes).
// So the node quarantines the replica instead of starting it:
//
//  1. it writes rebuild-SHARDID.json (the replica ID) under the NodeHost
//     directory, so that a restart before the rebuild finishes does not
//     start the replica on an empty state machine, and moves the state
//     machine aside to sm-SHARDID.corrupt-TIME;
//  2. Rebuild, run by the node in the background, asks another node of the
//     namespace that hosts the shard to remove this node's replica
//     (RAFT.REMOVE) and to add it back under a fresh replica ID (RAFT.ADD);
//  3. JoinShard removes the former replica's Raft data and starts the new
//     replica empty, and the leader sends it a snapshot of the shard.
//
// Nothing acknowledged is lost: the shard's other replicas hold every
// committed entry, and the rebuilt replica gets them from the leader.
// Corruption that appears while the node runs is found by the background
// scrub (scrub.go), which quarantines the replica the same way, or else by
// this check at the next restart (a read of a bad record answers
// CORRUPTION).
const rebuildPrefix = "rebuild-"

// CorruptReplica is a replica found corrupt (at start or by the scrub)
// and quarantined.
type CorruptReplica struct {
	Shard     int
	ReplicaID uint64
	MovedTo   string // where its state machine was moved ("" if the rebuild was resumed)
	Err       error  // what the check found (nil if resumed)
	Scrub     bool   // found by the background scrub (scrub.go), not at start
}

// rebuildState is rebuild-SHARDID.json.
type rebuildState struct {
	ReplicaID uint64 `json:"replica_id"`
}

func (s *Service) rebuildFile(sh int) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("%s%d.json", rebuildPrefix, s.ShardID(sh)))
}

func (s *Service) pebbleFS() pebblevfs.FS {
	if s.cfg.PebbleFS != nil {
		return s.cfg.PebbleFS
	}
	return pebblevfs.Default
}

// verifyDiskSM opens the state machine in dir read-through and decodes
// every record; errors wrap core.ErrCorruption when the data is bad.
func verifyDiskSM(dir string, opts pebbleengine.Options, limits core.Limits) error {
	m, err := openCheckedDiskSM(dir, opts, limits)
	if err != nil {
		return err
	}
	return m.Close()
}

// openCheckedDiskSM opens the state machine in dir and decodes every
// record (as verifyDiskSM); it returns it open: Dragonboat's Open of it is
// then free (diskSM.Open), and so is the log store's read of its applied
// index (Service.diskApplied).
func openCheckedDiskSM(dir string, opts pebbleengine.Options, limits core.Limits) (*diskSM, error) {
	m := newDiskSM(dir, opts, limits)
	if _, err := m.Open(nil); err != nil {
		return nil, err
	}
	// Dump decodes every record, checking its checksum, at the epoch (so
	// nothing counts as expired and everything is read).
	if _, err := m.store.Dump(time.Unix(0, 0)); err != nil {
		m.Close()
		return nil, fmt.Errorf("raft: verify state machine: %w", err)
	}
	return m, nil
}

// quarantine decides whether shard sh's replica rid may start: false if a
// rebuild is pending (rebuild file) or if its state machine is corrupt (it
// is then moved aside and the rebuild file written). A state machine that
// passes its check is left open for startReplica (s.checked); one written
// by a newer build (ErrNewerFormat) is an error: the node does not start,
// and the state machine stays where it is. s.mu is held.
func (s *Service) quarantine(sh int, rid uint64) (bool, error) {
	if s.cfg.Storage != "pebble" {
		return false, nil
	}
	if b, err := s.readFile(s.rebuildFile(sh)); err == nil {
		var st rebuildState
		if err := json.Unmarshal(b, &st); err != nil || st.ReplicaID == 0 {
			return false, fmt.Errorf("raft: %s: unreadable (%v); it marks shard %d's replica for a rebuild", s.rebuildFile(sh), err, sh)
		}
		s.corrupt[sh] = CorruptReplica{Shard: sh, ReplicaID: st.ReplicaID}
		return true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	dir := s.smDir(sh)
	fs := s.pebbleFS()
	if _, err := fs.Stat(dir); err != nil {
		return false, nil // a new replica: nothing to check
	}
	m, verr := openCheckedDiskSM(dir, pebbleengine.Options{FS: s.cfg.PebbleFS}, s.cfg.Limits)
	if verr == nil {
		if s.checked == nil {
			s.checked = map[int]*diskSM{}
		}
		s.checked[sh] = m
		return false, nil
	}
	if errors.Is(verr, ErrNewerFormat) {
		// Written by a newer build (a downgrade, or a snapshot from a
		// newer leader): not corrupt, and a rebuild would only fetch
		// the same format again. Refuse to start; the state is kept.
		return false, fmt.Errorf("raft: shard %d's state machine %s was written by a newer build; not starting it (run that build or a later one; the state is left in place): %w", sh, dir, verr)
	}
	if !errors.Is(verr, core.ErrCorruption) {
		return false, nil // other errors surface when the replica starts
	}
	return true, s.quarantineCorrupt(sh, rid, verr)
}

// quarantineCorrupt records the rebuild of shard sh's replica rid, whose
// stopped state machine failed its check with verr, and moves the state
// machine aside. s.mu is held.
func (s *Service) quarantineCorrupt(sh int, rid uint64, verr error) error {
	dir := s.smDir(sh)
	fs := s.pebbleFS()
	b, _ := json.Marshal(rebuildState{ReplicaID: rid})
	if err := s.writeFile(s.rebuildFile(sh), b); err != nil {
		return fmt.Errorf("raft: shard %d's state machine is corrupt (%v) and the rebuild cannot be recorded: %w", sh, verr, err)
	}
	aside := fmt.Sprintf("%s.corrupt-%s", dir, s.cfg.Clock().UTC().Format("20060102T150405.000000000"))
	if err := fs.Rename(dir, aside); err != nil {
		return fmt.Errorf("raft: shard %d's state machine is corrupt (%v) and cannot be moved aside: %w", sh, verr, err)
	}
	s.corrupt[sh] = CorruptReplica{Shard: sh, ReplicaID: rid, MovedTo: aside, Err: verr}
	return nil
}

func (s *Service) readFile(path string) ([]byte, error) {
	f, err := s.fs().Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// writeFile writes, syncs and renames into place.
func (s *Service) writeFile(path string, b []byte) error {
	fs := s.fs()
	tmp := path + ".tmp"
	f, err := fs.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return fs.Rename(tmp, path)
}

// Corrupt lists the replicas quarantined (at start or by the scrub) and
// not rebuilt yet.
func (s *Service) Corrupt() []CorruptReplica {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]CorruptReplica, 0, len(s.corrupt))
	for _, c := range s.corrupt {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Shard < out[j].Shard })
	return out
}

// AdminCall sends an admin command (RAFT.REMOVE, RAFT.ADD) to the
// namespace at node n's client API and returns its reply.
type AdminCall func(ctx context.Context, n Node, cmd core.Command) (core.Reply, error)

// Rebuild restores quarantined replica sh (see Corrupt) from the shard's
// other replicas: through call, a node hosting the shard removes this
// node's replica and adds it back under a fresh ID; then the new replica
// joins empty and gets the shard from the leader. It retries, trying the
// namespace's nodes in turn, until done, ctx ends or the Service closes.
func (s *Service) Rebuild(ctx context.Context, sh int, call AdminCall) (uint64, error) {
	s.mu.RLock()
	c, ok := s.corrupt[sh]
	s.mu.RUnlock()
	if !ok {
		return 0, fmt.Errorf("raft: rebuild: shard %d's replica is not quarantined", sh)
	}
	self := string(s.cfg.NodeID)
	shard := strconv.Itoa(sh)
	var rid uint64
	var last error
	step := func(n Node, args ...string) (core.Reply, error) {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second+4*time.Duration(s.cfg.ElectionRTT)*s.cfg.RTT)
		defer cancel()
		r, err := call(actx, n, core.Cmd(args[0], args[1:]...))
		if err == nil && r.Err != nil {
			err = r.Err
		}
		return r, err
	}
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		for _, n := range s.nodeList() {
			if string(n.ID) == self {
				continue
			}
			if s.closed.Load() {
				return 0, fmt.Errorf("raft: rebuild of shard %d: the namespace closed (last: %v)", sh, last)
			}
			if _, err := step(n, "RAFT.REMOVE", shard, self); err != nil {
				last = fmt.Errorf("at %s: RAFT.REMOVE: %w", n.ID, err)
				continue
			}
			r, err := step(n, "RAFT.ADD", shard, self)
			if err != nil || r.Int <= 0 {
				last = fmt.Errorf("at %s: RAFT.ADD: %v (reply %v)", n.ID, err, r)
				continue
			}
			rid = uint64(r.Int)
			break
		}
		if rid != 0 {
			break
		}
		if s.closed.Load() {
			return 0, fmt.Errorf("raft: rebuild of shard %d: the namespace closed (last: %v)", sh, last)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("raft: rebuild of shard %d: %w (last: %v)", sh, ctx.Err(), last)
		case <-time.After(backoff):
		}
	}
	s.mu.Lock()
	// JoinShard removes the former replica's Raft data (it is no longer a
	// member) before the new one starts.
	s.left[sh] = c.ReplicaID
	s.mu.Unlock()
	if err := s.JoinShard(sh, rid); err != nil {
		return 0, fmt.Errorf("raft: rebuild of shard %d: %w", sh, err)
	}
	s.mu.Lock()
	delete(s.corrupt, sh)
	s.mu.Unlock()
	if err := s.fs().Remove(s.rebuildFile(sh)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return rid, fmt.Errorf("raft: rebuild of shard %d done, but %s stays: %w", sh, s.rebuildFile(sh), err)
	}
	return rid, nil
}
