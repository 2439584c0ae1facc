//go:build unix

package transport

import (
	"errors"
	"syscall"
)

const syscallEMFILE = syscall.EMFILE

// What peekSocket found.
const (
	peekEmpty = iota // nothing to read: open and quiet
	peekData         // bytes waiting
	peekGone         // closed by the peer, or an error
)

// peekSocket looks at socket fd without consuming or waiting.
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
