// Package nodes is the real dialkv node process: configuration, the storage
// directory, the Thrift client and peer servers, membership, metrics and
// admin. It hosts each namespace's replication strategy from package
// consistency and drives it with the wall clock, real sockets and Pebble.
package nodes
