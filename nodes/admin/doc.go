// Package admin is `dialkv admin`: cluster operations from the command line
// — members and their health, namespaces (list, create, drop), where a key
// lives, cluster backups through the nodes' admin HTTP API, and restoring a
// backup or a retained checkpoint into a new data directory. The
// subcommands are described in docs/operations.md.
package admin
