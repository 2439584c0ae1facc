package jepsen

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/clients/client"
)

// causalProcLoad is a session-token-carrying SET/GET load on a causal
// namespace of real processes, recorded for the checkers. Client c writes
// only its own keys (so the last acknowledged write of a key is known),
// reads everyone's, and moves between the target nodes on every request
// (its session token goes with it).
type causalProcLoad struct {
	keys    int
	start   time.Time
	mu      sync.Mutex
	clients map[string]*client.Client // by node
	targets []string
	ops     []checker.Op
	stop    chan struct{}
	wg      sync.WaitGroup
}

func (l *causalProcLoad) now() int64 { return int64(time.Since(l.start)) }

func (l *causalProcLoad) setTargets(ts ...string) {
	l.mu.Lock()
	l.targets = ts
	l.mu.Unlock()
}

func (l *causalProcLoad) run(c int) {
	defer l.wg.Done()
	var tok []byte
	sess := 0
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		l.mu.Lock()
		at := l.targets[(c+i)%len(l.targets)]
		cl := l.clients[at]
		l.mu.Unlock()
		s := cl.NewSession(fmt.Sprintf("c%d", c))
		s.SetToken(tok)
		op := checker.Op{Client: c, Session: fmt.Sprintf("c%d/%d", c, sess), Invoke: l.now(), Node: at, TokenIn: string(tok)}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var err error
		var v client.Value
		if i%2 == 0 {
			op.F, op.Key, op.Args = checker.FPut, fmt.Sprintf("c%d-%d", c, (i/2)%l.keys), []string{fmt.Sprintf("v%d-%d", c, i)}
			_, err = s.Set(ctx, op.Key, []byte(op.Args[0]))
		} else {
			op.F, op.Key = checker.FGet, fmt.Sprintf("c%d-%d", (c+i)%4, (i*7)%l.keys)
			v, err = s.Get(ctx, op.Key)
		}
		cancel()
		done := l.now()
		op.Complete = &done
		var ce *client.Error
		switch {
		case errors.As(err, &ce) && ce.Code == client.CodeUnavailable && !ce.MaybeApplied:
			op.Outcome, op.Error = checker.Fail, err.Error() // certainly not executed
		case err != nil:
			op.Outcome, op.Error = checker.Unknown, err.Error()
		default:
			op.Outcome = checker.OK
			tok = s.Token()
			op.TokenOut = string(tok)
			if op.F == checker.FGet && v.Found {
				op.Value = checker.StrPtr(string(v.Data))
			}
		}
		if op.Outcome == checker.Unknown && op.F == checker.FPut {
			tok = nil // the session cannot tell its latest write any more: a new one
			sess++
		}
		l.mu.Lock()
		l.ops = append(l.ops, op)
		l.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

// TestProcCausalAddNode (issue 9): three `dialkv node` processes with a
// causal namespace in two regions (r1: n1,n2; r2: n3) under a recorded
// session-carrying load; a fourth process started with --join only is
// added to r1 with `dialkv admin add-node n4 --region r1` (after the same
// command without --region is refused). During the change the namespace
// keeps serving (only the keys that move are refused, with UNAVAILABLE);
// afterwards the load also goes through n4, the session and causal
// checkers pass on the whole history, and every key reads its last
// acknowledged write at all four nodes.
func TestProcCausalAddNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four processes (about 15 s)")
	}
	bin := testBinary(t)
	cl, err := StartProcCluster(Spec{Nodes: 3, Fsync: "always", Binary: bin}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var addrs []string
	for _, n := range cl.Nodes() {
		addrs = append(addrs, cl.Addr(n))
	}
	admin, err := client.New(addrs)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	const ns = "cz"
	if err := admin.CreateNamespace(context.Background(), client.NamespaceSpec{Name: ns, Strategy: "causal", Params: map[string]string{"regions": "r1:n1,n2;r2:n3", "timeout": "1s"}}); err != nil {
		t.Fatal(err)
	}
	load := &causalProcLoad{keys: 40, start: time.Now(), clients: map[string]*client.Client{}, stop: make(chan struct{})}
	open := func(n string) {
		c, err := client.New([]string{cl.Addr(n)}, client.WithNamespace(ns), client.WithRetries(0, 0, 0), client.WithTimeout(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		load.mu.Lock()
		load.clients[n] = c
		load.mu.Unlock()
	}
	for _, n := range cl.Nodes() {
		open(n)
		waitSet(t, load.clients[n], n)
	}
	load.setTargets("n1", "n2", "n3")
	for c := range 4 {
		load.wg.Add(1)
		go load.run(c)
	}
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(load.stop)
			load.wg.Wait()
		}
	}
	defer stopLoad()
	time.Sleep(2 * time.Second)

	if err := cl.Join("n4"); err != nil {
		t.Fatalf("start n4 with --join: %v", err)
	}
	open("n4")
	adminCmd := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, append([]string{"admin"}, args...)...).CombinedOutput()
		return string(out), err
	}
	// n4 appears in the gossip view a moment after it starts.
	var out string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		out, err = adminCmd("add-node", "n4", "--addr", cl.Addr("n1"))
		if err != nil && strings.Contains(out, "no region") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("add-node n4 without --region: %v\n%s\nwant a refusal naming the missing region", err, out)
		}
	}
	changeStart := load.now()
	out, err = adminCmd("add-node", "n4", "--region", "r1", "--addr", cl.Addr("n2"))
	changeEnd := load.now()
	if err != nil {
		t.Fatalf("dialkv admin add-node n4 --region r1: %v\n%s\nn4's log:\n%s", err, out, cl.Logs("n4"))
	}
	t.Logf("dialkv admin add-node n4 --region r1:\n%s", out)
	if !strings.Contains(out, "causal namespaces refused the keys that moved for") {
		t.Errorf("add-node did not report the pause of the moved keys:\n%s", out)
	}
	load.setTargets("n1", "n2", "n3", "n4")
	time.Sleep(2 * time.Second)
	stopLoad()
	time.Sleep(time.Second) // replication between regions settles

	ops := load.ops
	during := map[checker.Outcome]int{}
	refusedKeys := map[string]bool{}
	for _, op := range ops {
		if op.Invoke < changeStart || op.Invoke > changeEnd {
			continue
		}
		during[op.Outcome]++
		if op.Outcome == checker.Fail {
			refusedKeys[op.Key] = true
			if !strings.Contains(op.Error, "moves to another node") && !strings.Contains(op.Error, "dependencies of the session token") {
				t.Errorf("%s %s at %s refused during the change: %s", op.F, op.Key, op.Node, op.Error)
			}
		}
	}
	t.Logf("during the change: %d ok, %d refused (%d distinct keys of %d), %d unknown", during[checker.OK], during[checker.Fail], len(refusedKeys), 4*load.keys, during[checker.Unknown])
	if during[checker.OK] == 0 {
		t.Error("no request was served during the change: the namespace was paused as a whole")
	}
	// Final reads, a fresh session per node and key: the last
	// acknowledged write of each key (each key has one writer, whose
	// writes are sequential), or a later one of unknown outcome.
	last := map[string]int{}
	for i, op := range ops {
		if op.F == checker.FPut && op.Outcome == checker.OK {
			last[op.Key] = i
		}
	}
	for _, n := range cl.Nodes() {
		for k, i := range last {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			v, err := load.clients[n].NewSession("final").Get(ctx, k)
			cancel()
			if err != nil || !v.Found {
				t.Fatalf("final GET %s at %s: %v (found %v)", k, n, err, v.Found)
			}
			if got := string(v.Data); got != ops[i].Args[0] && !laterUnknownPut(ops, i, got) {
				t.Errorf("GET %s at %s = %q, want the last acknowledged %q (go test -run TestProcCausalAddNode ./clients/jepsen)", k, n, got, ops[i].Args[0])
			}
		}
	}
	for i := range ops {
		ops[i].ID = int64(i + 1)
	}
	nOK, nFail, nUnknown := checker.Outcomes(ops)
	res := checker.Check(ops, nil, checker.Options{Checks: []string{checker.CheckSession, checker.CheckCausal}, MaxExamples: 5})
	for _, name := range []string{checker.CheckSession, checker.CheckCausal} {
		cr := res.Get(name)
		t.Logf("%s: %s: %s", name, cr.Verdict, cr.Summary)
		if cr.Verdict != checker.VerdictOK {
			t.Errorf("%s: %s %v", name, cr.Summary, cr.Anomalies)
		}
	}
	b, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load: %d ok, %d refused, %d unknown (loadavg %s)", nOK, nFail, nUnknown, strings.TrimSpace(string(b)))
}

// waitSet retries a SET through c until the node serves the namespace.
func waitSet(t *testing.T, c *client.Client, node string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = c.Set(ctx, "ready-"+node, []byte("1"))
		cancel()
		if err == nil {
			return
		}
	}
	t.Fatalf("the causal namespace is not served at %s: %v", node, err)
}

// laterUnknownPut reports whether a put of val to the key of ops[i],
// after it and of unknown outcome, may explain a read of val.
func laterUnknownPut(ops []checker.Op, i int, val string) bool {
	for _, op := range ops[i+1:] {
		if op.F == checker.FPut && op.Key == ops[i].Key && op.Outcome == checker.Unknown && op.Args[0] == val {
			return true
		}
	}
	return false
}
