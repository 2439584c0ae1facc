package transport

import "golang.org/x/sys/unix"

// pollRDHUP is the poll event for "peer shut down its writing side".
const pollRDHUP = unix.POLLRDHUP
