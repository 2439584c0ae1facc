//go:build unix && !linux

package transport

// pollRDHUP is zero where poll has no POLLRDHUP: hungUp then sees only
// POLLHUP and POLLERR, and a half-closed TLS connection looks alive until
// the next call fails.
const pollRDHUP = 0
