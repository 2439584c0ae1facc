// The dialkv peer API: how nodes carry replication messages of the sans-IO
// strategies (quorum, causal) to each other. Raft groups use Dragonboat's
// own transport. Regenerate with `make gen`; never edit gen-go/ by hand.
namespace go dialkvpeer

// PeerMessage is one consistency.Message of one namespace.
struct PeerMessage {
  1: string namespace_name
  2: string from_node
  3: string to_node
  4: binary body
  // CRC-32C (Castagnoli) of body: a message that fails it is dropped and
  // counted, never handed to a replica.
  5: i32 crc32c
}

exception PeerError {
  1: string message
}

service Peer {
  // deliver hands messages to their replicas, best effort: the strategies
  // retry what is lost. cluster must match the receiving node's cluster
  // name. Returns the number of messages accepted.
  i32 deliver(1: string cluster, 2: list<PeerMessage> msgs) throws (1: PeerError err)
}
