//go:build unix

package transport

import "syscall"

const syscallEMFILE = syscall.EMFILE
