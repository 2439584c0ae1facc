package security

import (
	"os"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"
)

// TestMain turns off the generated processors' connectivity check before
// any test runs: transport.NewServer does it on first use, and a processor
// of an earlier test still serving would otherwise read the interval while
// it changes to 0 (time.NewTicker panics on 0).
func TestMain(m *testing.M) {
	thrift.ServerConnectivityCheckInterval = 0
	os.Exit(m.Run())
}
