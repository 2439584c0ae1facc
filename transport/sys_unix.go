//go:build unix

package transport

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

const syscallEMFILE = syscall.EMFILE

// What socketState found.
const (
	peekEmpty = iota // nothing to read: open and quiet
	peekData         // bytes waiting
	peekGone         // closed by the peer, or an error
)

// socketState looks at socket fd without consuming or waiting. The order
// matters: the hang-up test comes first, because a peer that closed may
// have sent bytes before its FIN (a TLS close_notify alert), which the peek
// alone would report as data waiting.
func socketState(fd uintptr) int {
	if hungUp(fd) {
		return peekGone
	}
	return peekSocket(fd)
}

// hungUp reports whether the peer shut down its side of socket fd, or the
// socket is in error: poll with a zero timeout for POLLRDHUP (where the
// platform has it), POLLHUP or POLLERR.
func hungUp(fd uintptr) bool {
	for {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | pollRDHUP}}
		n, err := unix.Poll(p, 0)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil:
			return true
		}
		return n > 0 && p[0].Revents&(pollRDHUP|unix.POLLHUP|unix.POLLERR) != 0
	}
}

// peekSocket peeks at socket fd without consuming or waiting.
func peekSocket(fd uintptr) int {
	var b [1]byte
	for {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EAGAIN):
			return peekEmpty
		case err != nil, n == 0:
			return peekGone
		}
		return peekData
	}
}
