//go:build !linux

package bench

import (
	"context"
	"errors"
	"time"
)

const loopSupported = false

type eventLoop struct{}

func newEventLoop(Config, Mix, KeyChooser) (*eventLoop, error) {
	return nil, errors.New("--io loop: only on Linux (use --io goroutine)")
}

func (*eventLoop) run(context.Context, time.Time, time.Time, *workerStats) int64 { return 0 }
func (*eventLoop) close()                                                        {}
