package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestAddrsBelowEphemeralAndFree(t *testing.T) {
	addrs, err := Addrs(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Fatalf("address %s returned twice", a)
		}
		seen[a] = true
		_, ps, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(ps)
		if p < 1024 || p >= ephemeralLow() {
			t.Errorf("port %d outside [1024, %d)", p, ephemeralLow())
		}
		l, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("returned address %s is not free: %v", a, err)
			continue
		}
		l.Close()
	}
}
