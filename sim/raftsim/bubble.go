package raftsim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dialkv/dialkv/sim/simrun"
)

// RunT runs one simulation inside a testing/synctest bubble of t: the
// bubble's fake clock drives every NodeHost, timer, client and fault.
func RunT(t *testing.T, opts simrun.Options) (*Outcome, error) {
	QuietLogs()
	var out *Outcome
	var err error
	real := time.Now()
	bubble(t, func(t *testing.T) {
		out, err = simulate(opts, nil)
	})
	if out != nil {
		out.Result.Real = time.Since(real)
	}
	return out, err
}

// bubble runs f in a new synctest bubble after emptying every sync.Pool of
// the process. Pebble (Dragonboat's LogDB, v0, and the state machines',
// v2) keeps the sstable writer's write tasks in a process-wide sync.Pool
// (writeTaskPool), each with a channel made by whichever goroutine created
// it; a channel made in an earlier run's bubble belongs to that bubble, so
// the next run's first multi-block sstable died with "fatal error: send on
// synctest channel from outside bubble". Two collections empty every pool
// (the first moves pooled objects to the victim cache, the second drops
// it), and no goroutine of the finished bubble is left to put anything
// back. Anything else pooled (buffers, iterators) would only make the
// allocation pattern, never the run, depend on earlier runs.
func bubble(t *testing.T, f func(t *testing.T)) {
	runtime.GC()
	runtime.GC()
	synctest.Test(t, f)
}

// runMu serialises runs in one process: Dragonboat's election-timeout
// random source is process-wide (see seedElectionRand).
var runMu sync.Mutex

// Run runs one simulation from a normal program (`dialkv sim --strategy
// raft`), where there is no *testing.T: testing.MainStart, with a
// hand-written implementation of its (unexported) testDeps interface, runs
// one synthetic test whose body is RunT. The testing package's own flags
// are registered on flag.CommandLine (testing.Init) but never parsed from
// the command line. The test's output ("PASS"/"FAIL" and logs) goes to
// stderr.
func Run(opts simrun.Options) (*Outcome, error) {
	runMu.Lock()
	defer runMu.Unlock()
	var out *Outcome
	var err error
	ran := false
	tests := []testing.InternalTest{{Name: "RaftSim", F: func(t *testing.T) {
		ran = true
		out, err = RunT(t, opts)
	}}}
	m := testing.MainStart(testDeps{}, tests, nil, nil, nil)
	stdout := os.Stdout
	os.Stdout = os.Stderr // testing prints PASS/FAIL on stdout
	code := m.Run()
	os.Stdout = stdout
	switch {
	case err != nil:
		return out, err
	case !ran:
		return nil, errors.New("raftsim: the synthetic test did not run")
	case code != 0:
		return out, fmt.Errorf("raftsim: the synthetic test failed (exit code %d)", code)
	}
	return out, nil
}

// testDeps implements the unexported testing.testDeps interface that
// testing.MainStart takes (Go 1.26: see testing/testing.go); only
// MatchString matters here.
type testDeps struct{}

func (testDeps) ImportPath() string                          { return "github.com/dialkv/dialkv/sim/raftsim" }
func (testDeps) ModulePath() string                          { return "github.com/dialkv/dialkv" }
func (testDeps) MatchString(pat, str string) (bool, error)   { return true, nil }
func (testDeps) SetPanicOnExit0(bool)                        {}
func (testDeps) StartCPUProfile(io.Writer) error             { return nil }
func (testDeps) StopCPUProfile()                             {}
func (testDeps) StartTestLog(io.Writer)                      {}
func (testDeps) StopTestLog() error                          { return nil }
func (testDeps) WriteProfileTo(string, io.Writer, int) error { return nil }
func (testDeps) CoordinateFuzzing(time.Duration, int64, time.Duration, int64, int, []corpusEntry, []reflect.Type, string, string) error {
	return errors.New("raftsim: no fuzzing")
}
func (testDeps) RunFuzzWorker(func(corpusEntry) error) error {
	return errors.New("raftsim: no fuzzing")
}
func (testDeps) ReadCorpus(string, []reflect.Type) ([]corpusEntry, error) {
	return nil, nil
}
func (testDeps) CheckCorpus([]any, []reflect.Type) error { return nil }
func (testDeps) ResetCoverage()                          {}
func (testDeps) SnapshotCoverage()                       {}
func (testDeps) InitRuntimeCoverage() (mode string, tearDown func(string, string) (string, error), snapcov func() float64) {
	return "", nil, nil
}

// corpusEntry mirrors testing's unexported corpusEntry alias.
type corpusEntry = struct {
	Parent     string
	Path       string
	Data       []byte
	Values     []any
	Generation int
	IsSeed     bool
}
