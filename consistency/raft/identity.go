package raft

// IsNode reports whether id is a node of the namespace (the parameter
// nodes). The node's Raft transport accepts TLS connections only from
// certificates naming such a node (nodes.RaftStrategy, transport/raftls).
func (s *Service) IsNode(id string) bool {
	_, ok := s.nodeIndex(id)
	return ok
}
