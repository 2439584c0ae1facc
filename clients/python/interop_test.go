package python

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
	"github.com/dialkv/dialkv/nodes"
	"github.com/dialkv/dialkv/transport"
)

// python returns an interpreter that has the thrift module, or skips.
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if err := exec.Command(p, "-c", "import thrift").Run(); err == nil {
			return p
		}
	}
	t.Skip("skipping: no python3 with the thrift module (python3 -c 'import thrift' fails); apt-get install -y python3-thrift")
	return ""
}

func runPy(t *testing.T, py string, args ...string) string {
	t.Helper()
	cmd := exec.Command(py, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", py, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// The wrapper's own offline tests (reply conversion, argument encoding).
func TestPythonUnit(t *testing.T) {
	py := python(t)
	// unittest reports on stderr and exits non-zero on a failure.
	runPy(t, py, "-m", "unittest", "discover", "-s", ".", "-p", "test_*.py")
}

func startNode(t *testing.T, proto transport.Protocol) string {
	t.Helper()
	n, err := nodes.Start(nodes.Config{ID: "py-" + string(proto), Listen: "127.0.0.1:0", DataDir: t.TempDir(), Fsync: core.SyncNever, Protocol: proto})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return n.Addr()
}

// Python writes, Go reads; Go writes, Python reads; over both protocols.
func TestInterop(t *testing.T) {
	py := python(t)
	for _, proto := range []transport.Protocol{transport.Binary, transport.Compact} {
		t.Run(string(proto), func(t *testing.T) {
			addr := startNode(t, proto)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := client.New([]string{addr}, client.WithProtocol(string(proto)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const n = 20

			// Python -> Go.
			if out := runPy(t, py, "interop.py", addr, "write", "py:", fmt.Sprint(n), string(proto)); strings.TrimSpace(out) != "ok" {
				t.Fatalf("python write: %q", out)
			}
			for i := range n {
				v, err := c.Get(ctx, fmt.Sprintf("py:%d", i))
				if err != nil || string(v.Data) != fmt.Sprintf("py-%d", i) {
					t.Errorf("Go read of py:%d = %q, %v", i, v.Data, err)
				}
			}
			h, err := c.Do(ctx, "HGET", "py:h", "lang")
			if err != nil || string(h.Str) != "python" {
				t.Errorf("Go HGET py:h lang = %q, %v", h.Str, err)
			}
			b, err := c.Get(ctx, "py:bin")
			if err != nil || !bytes.Equal(b.Data, []byte{0, 0xff, '\n'}) {
				t.Errorf("Go read of py:bin = %q, %v", b.Data, err)
			}

			// Go -> Python.
			want := map[string]any{}
			for i := range n {
				if _, err := c.Set(ctx, fmt.Sprintf("go:%d", i), []byte(fmt.Sprintf("go-%d", i))); err != nil {
					t.Fatal(err)
				}
				want[fmt.Sprintf("go:%d", i)] = fmt.Sprintf("go-%d", i)
			}
			if _, err := c.Do(ctx, "HSET", "go:h", "lang", "go", "n", 3); err != nil {
				t.Fatal(err)
			}
			want["go:h"] = map[string]any{"lang": "go", "n": "3"}
			for range 3 {
				if _, err := c.Incr(ctx, "go:n", 1); err != nil {
					t.Fatal(err)
				}
			}
			want["go:n"] = "3"
			var got map[string]any
			out := runPy(t, py, "interop.py", addr, "read", "go:", fmt.Sprint(n), string(proto))
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("python read output %q: %v", out, err)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if !bytes.Equal(gj, wj) {
				t.Errorf("Python read\n%s\nwant\n%s", gj, wj)
			}
		})
	}
}

// The committed generated code is what the IDL generates today.
func TestGeneratedCodeUpToDate(t *testing.T) {
	if _, err := exec.LookPath("thrift"); err != nil {
		t.Skip("skipping: thrift compiler not installed (apt-get install -y thrift-compiler)")
	}
	dir := t.TempDir()
	out, err := exec.Command("thrift", "--gen", "py", "-out", dir, "../../transport/thrift/dialkv.thrift").CombinedOutput()
	if err != nil {
		t.Fatalf("thrift --gen py: %v\n%s", err, out)
	}
	for _, f := range []string{"__init__.py", "dialkv/__init__.py", "dialkv/constants.py", "dialkv/ttypes.py", "dialkv/DialKV.py"} {
		fresh, err1 := os.ReadFile(filepath.Join(dir, f))
		committed, err2 := os.ReadFile(filepath.Join("dialkv_gen", f))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", f, err1, err2)
		}
		if !bytes.Equal(fresh, committed) {
			t.Errorf("clients/python/dialkv_gen/%s is stale: run `make -C clients/python gen`", f)
		}
	}
}
