//go:build !linux

package transport

import "net"

const epollModeSupported = false

type epollState struct{}

func (s *Server) serveEpoll(ln net.Listener) error { return s.serveGoroutines(ln) }
