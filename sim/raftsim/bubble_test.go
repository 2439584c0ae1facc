package raftsim

import (
	"runtime"
	"runtime/debug"
	"sync"
	"testing"
)

// pooledTask is like Pebble's sstable write task: a pooled object holding
// a channel made by the goroutine that created it.
type pooledTask struct{ done chan bool }

// TestBubbleEmptiesPools: an object pooled in one run's bubble, with a
// channel made there, is never handed to the next run's bubble, where
// using the channel is a fatal error ("send on synctest channel from
// outside bubble": Pebble's writeTaskPool between two raft runs of a
// sweep). With one P and no garbage collection of its own, the pool is
// certain to keep the object unless bubble empties it; without the two
// collections in bubble the second run dies (checked).
func TestBubbleEmptiesPools(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	pool := sync.Pool{New: func() any { return &pooledTask{done: make(chan bool, 1)} }}
	for run := 0; run < 2; run++ {
		bubble(t, func(t *testing.T) {
			finished := make(chan struct{})
			go func() { // like Pebble's flush goroutine
				task := pool.Get().(*pooledTask)
				task.done <- true
				<-task.done
				pool.Put(task)
				close(finished)
			}()
			<-finished
		})
	}
}
