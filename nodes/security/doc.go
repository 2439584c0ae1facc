// Package security holds the building blocks that keep a dialkv node safe
// from the network: TLS configuration for the client and peer listeners
// (mutual TLS between nodes), authentication (users with argon2id password
// hashes, bearer tokens, verified client certificates), access control per
// namespace (read, write, admin) from a small JSON policy file, a Guard that
// rejects unauthenticated or forbidden requests before any work is done,
// redaction of secrets in logs, a per-connection token-bucket rate limiter,
// a load shedder with a retry-after hint, and `dialkv certs` (CertsMain),
// which makes a development CA and node and client certificates.
//
// Nothing here reads the clock or global randomness on its own: the rate
// limiter and shedder take the time as an input, so tests are
// deterministic. docs/security.md has the threat model and which node
// flags are wired.
package security
