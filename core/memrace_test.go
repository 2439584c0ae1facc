package core

import (
	"strconv"
	"sync"
	"testing"
)

// TestMemEngineConcurrent: readers (Get, iterators, snapshots) run while a
// writer commits and compacts; run with -race to check the locking.
func TestMemEngineConcurrent(t *testing.T) {
	e := NewMemEngine()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				e.Get([]byte("k1"))
				it := e.NewIter(nil, nil)
				for it.First(); it.Valid(); it.Next() {
				}
				it.Close()
				s := e.NewSnapshot()
				s.Get([]byte("k2"))
				s.Close()
			}
		}()
	}
	for i := 0; i < 6000; i++ {
		b := e.NewBatch()
		b.Set([]byte("k"+strconv.Itoa(i%5000)), []byte("v"))
		if i%7 == 0 {
			b.Delete([]byte("k" + strconv.Itoa(i%300)))
		}
		if err := b.Commit(i%100 == 0); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if e.Len() == 0 {
		t.Fatal("nothing written")
	}
}
