// Package nodes is the real dialkv node process: `dialkv node` and
// `dialkv demo`.
//
// A Node serves the Thrift client API (package transport: framed, binary or
// compact protocol, epoll or goroutine connection handling, connection limit,
// idle timeout, maximum frame size) and routes each request to the
// consistency.Service of its namespace. Namespaces are listed in a catalog
// file under the data directory and each has its own Pebble database; the
// built-in strategy is `local` (Local: one replica, group commit under
// --fsync=always), others plug in through Config.Strategies (raft:
// RaftStrategy). The node also runs the TTL sweep with the wall clock,
// pub/sub delivery with long-poll subscriptions (routing by core.PubSub),
// Prometheus metrics on a registry of its own, and log/slog logs. See
// docs/node.md.
package nodes
