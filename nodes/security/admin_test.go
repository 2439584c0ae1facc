package security

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

func TestCommandNeed(t *testing.T) {
	for _, tc := range []struct {
		cmd  *gen.Command
		want Need
	}{
		{cmd("GET", "k"), Need{Action: Read}},
		{cmd("set", "k", "v"), Need{Action: Write}},
		{cmd("FLUSHALL"), Need{Action: Write}},
		{cmd("CLUSTER", "MEMBERS"), Need{Action: Read}},
		{cmd("cluster", "ring"), Need{Action: Read}},
		{cmd("CLUSTER", "REBUILD"), Need{Action: Read, Cluster: true}},
		{cmd("cluster", "rebuild", "c"), Need{Action: Read, Cluster: true}},
		{cmd("CLUSTER", "REBUILD", "c", "x"), Need{Action: Admin, Cluster: true}},
		{cmd("CLUSTER", "RING", "SET", "{}"), Need{Action: Admin, Cluster: true}},
		{cmd("CLUSTER", "ring", "set", "{}"), Need{Action: Admin, Cluster: true}},
		{cmd("CLUSTER", "FORGET", "n1"), Need{Action: Admin, Cluster: true}},
		{cmd("CLUSTER"), Need{Action: Admin, Cluster: true}},
		{cmd("RAFT.ADD", "0", "n2"), Need{Action: Admin}},
		{cmd("raft.remove", "0", "n2"), Need{Action: Admin}},
		{cmd("RAFT.JOIN", "0", "7"), Need{Action: Admin}},
		{cmd("RAFT.LEAVE", "0"), Need{Action: Admin}},
		{cmd("RAFT.NODES", "RETIRE", "n2"), Need{Action: Admin}},
		{cmd("RAFT.NODES"), Need{Action: Read}},
		{cmd("RAFT.MEMBERS", "0"), Need{Action: Read}},
		{cmd("RAFT.HOSTED"), Need{Action: Read}},
		{cmd("RAFT.SYNCED", "0"), Need{Action: Read}},
		{cmd("RAFT.SOMETHINGNEW"), Need{Action: Admin}},
		{cmd("HOTKEYS", "5"), Need{Action: Read, Cluster: true}},
		{nil, Need{Action: Write}},
	} {
		if got := commandNeed(tc.cmd); got != tc.want {
			t.Errorf("%v: need %+v, want %+v", tc.cmd, got, tc.want)
		}
	}
}

// TestManagementCommandsNeedAdmin: with a policy, a principal allowed to
// write everywhere gets Forbidden for every cluster-management command
// (alone, in a batch and in a transaction) and the handler never sees it;
// a namespace admin may manage its raft namespace but not the ring; an
// admin of "*", and a node principal without any grant, may do all.
func TestManagementCommandsNeedAdmin(t *testing.T) {
	pf := PolicyFile{Grants: []Grant{
		{Principals: []string{"writer"}, Namespaces: []string{"*"}, Actions: []string{"read", "write"}},
		{Principals: []string{"nsadmin"}, Namespaces: []string{"rns"}, Actions: []string{"admin"}},
		{Principals: []string{"ops"}, Namespaces: []string{"*"}, Actions: []string{"admin"}},
	}, RevokedCerts: []string{"0x5"}}
	pol, err := NewPolicy(pf)
	if err != nil {
		t.Fatal(err)
	}
	rns := "rns"
	opts := &gen.RequestOptions{Ns: &rns}
	mgmt := []*gen.Command{
		cmd("CLUSTER", "RING", "SET", `{"version":9}`),
		cmd("RAFT.ADD", "0", "n2"),
		cmd("RAFT.REMOVE", "0", "n2"),
		cmd("RAFT.JOIN", "0", "7"),
		cmd("RAFT.LEAVE", "0"),
		cmd("RAFT.NODES", "ADD", "n4", "h:1", "h:2"),
	}
	principals := map[string]Principal{
		"writer":       {Name: "writer", Method: "cert"},
		"nsadmin":      {Name: "nsadmin", Method: "cert"},
		"ops":          {Name: "ops", Method: "cert"},
		"node n1":      {Name: "n1", Method: MethodNode, serial: "4"},
		"revoked node": {Name: "n9", Method: MethodNode, serial: "5"},
		"cert n1":      {Name: "n1", Method: "cert"}, // same name, but not a node certificate
	}
	// want: principal -> command index -> "ok" / "forbidden" / "unauthenticated".
	want := func(who string, c *gen.Command) string {
		switch who {
		case "ops", "node n1":
			return "ok"
		case "revoked node":
			return "unauthenticated"
		case "nsadmin":
			if c.Name == "CLUSTER" {
				return "forbidden" // cluster-wide: admin of one namespace is not enough
			}
			return "ok"
		}
		return "forbidden"
	}
	kind := func(err error) string {
		var ue *gen.Unauthenticated
		var fe *gen.Forbidden
		switch {
		case err == nil:
			return "ok"
		case errors.As(err, &ue):
			return "unauthenticated"
		case errors.As(err, &fe):
			return "forbidden"
		}
		return "other: " + err.Error()
	}
	for who, p := range principals {
		for _, c := range mgmt {
			ctx := WithPrincipal(context.Background(), p)
			for way, do := range map[string]func(g *Guard) error{
				"call": func(g *Guard) error { _, err := g.Call(ctx, opts, c); return err },
				"batch": func(g *Guard) error {
					_, err := g.Execute(ctx, opts, []*gen.Command{cmd("GET", "k"), c})
					return err
				},
				"transaction": func(g *Guard) error {
					_, err := g.Transaction(ctx, opts, nil, []*gen.Command{c})
					return err
				},
			} {
				inner := &fakeKV{}
				g := &Guard{Inner: inner, Auth: pol}
				got, exp := kind(do(g)), want(who, c)
				if got != exp {
					t.Errorf("%s: %s %s %s: %s, want %s (go test ./nodes/security -run TestManagementCommandsNeedAdmin)", who, way, c.Name, strings.Join(strings.Fields(string(c.Argv[0])), " "), got, exp)
				}
				if n := inner.calls.Load(); (got == "ok") != (n == 1) {
					t.Errorf("%s: %s %s: outcome %s but the handler saw %d calls", who, way, c.Name, got, n)
				}
			}
		}
	}
	// The reports stay readable by a writer (read is implied by its grant).
	for _, c := range []*gen.Command{cmd("CLUSTER", "MEMBERS"), cmd("CLUSTER", "RING"), cmd("RAFT.MEMBERS", "0")} {
		g := &Guard{Inner: &fakeKV{}, Auth: pol}
		if _, err := g.Call(WithPrincipal(context.Background(), principals["writer"]), opts, c); err != nil {
			t.Errorf("writer %s %s: %v", c.Name, c.Argv[0], err)
		}
	}
}

// TestNodePrincipal: on a client listener with --auth-file and peer TLS,
// a node certificate of the peer CA is a node principal (even without
// --tls-ca), a client certificate of the same CA is a plain certificate
// principal, and a node certificate of another CA is refused. Without
// peer TLS nothing is a node.
func TestNodePrincipal(t *testing.T) {
	dir, other := devCerts(t), devCerts(t)
	pol := filepath.Join(dir, "policy.json")
	b, _ := json.Marshal(PolicyFile{Grants: []Grant{{Principals: []string{"alice"}, Namespaces: []string{"*"}, Actions: []string{"read"}}}})
	if err := os.WriteFile(pol, b, 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(args ...string) Settings {
		var f Flags
		fs := flag.NewFlagSet("node", flag.ContinueOnError)
		f.Register(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		s, err := f.Load(1)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	n1 := files(dir, "node-n1", true)
	withPeer := load("--tls-cert", n1.Cert, "--tls-key", n1.Key, "--auth-file", pol,
		"--peer-tls-cert", n1.Cert, "--peer-tls-key", n1.Key, "--peer-tls-ca", n1.CA)
	withoutPeer := load("--tls-cert", n1.Cert, "--tls-key", n1.Key, "--tls-ca", n1.CA, "--auth-file", pol)
	client := func(d, base string) *TLSFiles { f := files(d, base, false); f.CA = n1.CA; return &f }
	for _, tc := range []struct {
		name       string
		s          Settings
		cert       *TLSFiles
		wantName   string // "" : no principal
		wantMethod string
		refused    bool
	}{
		{"node certificate is a node", withPeer, client(dir, "node-n2"), "n2", MethodNode, false},
		{"client certificate of the same CA is not", withPeer, client(dir, "client-alice"), "alice", "cert", false},
		{"node certificate of another CA is refused", withPeer, client(other, "node-n2"), "", "", true},
		{"anonymous", withPeer, nil, "", "", false},
		{"no peer TLS: a node certificate is a plain certificate", withoutPeer, client(dir, "node-n2"), "n2", "cert", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := TLSFiles{CA: n1.CA}
			if tc.cert != nil {
				f = *tc.cert
			}
			cc, err := ClientConfig(f, "127.0.0.1")
			if err != nil {
				t.Fatal(err)
			}
			ctx, serr, cerr := handshakeWith(t, tc.s.ClientTLS, cc, tc.s.ConnContext)
			if tc.refused {
				if serr == nil {
					t.Fatal("handshake accepted")
				}
				return
			}
			if serr != nil || cerr != nil {
				t.Fatalf("server %v client %v", serr, cerr)
			}
			p, ok := PrincipalFrom(ctx)
			if tc.wantName == "" {
				if ok {
					t.Fatalf("principal %+v; want none", p)
				}
				return
			}
			if p.Name != tc.wantName || p.Method != tc.wantMethod {
				t.Fatalf("principal %s/%s; want %s/%s", p.Name, p.Method, tc.wantName, tc.wantMethod)
			}
			// A node may manage the cluster without a grant; nothing else may.
			err = tc.s.Authorizer.Authorize(p, ClusterScope, Admin)
			if (err == nil) != (tc.wantMethod == MethodNode) {
				t.Fatalf("admin on the cluster for %s/%s: %v", p.Name, p.Method, err)
			}
		})
	}
}

// TestGuardOnReject: every refusal is reported once with its reason (and
// an allowed request not at all).
func TestGuardOnReject(t *testing.T) {
	pol, _ := testPolicy(t)
	var got []string
	now := time.Unix(0, 0)
	sh, err := NewShedder(ShedderConfig{MaxInFlight: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	g := &Guard{Inner: &fakeKV{}, Auth: pol, Shedder: sh, Now: func() time.Time { return now },
		OnReject: func(r string) { got = append(got, r) }}
	reader := WithPrincipal(context.Background(), Principal{Name: "reader", Method: "cert"})
	bucket, _ := NewTokenBucket(1, 1)
	limited := WithLimiter(reader, bucket)
	for _, tc := range []struct {
		name string
		do   func() error
		want string // "" : allowed
	}{
		{"allowed", func() error { _, err := g.Call(reader, nil, cmd("GET", "k")); return err }, ""},
		{"anonymous", func() error { _, err := g.Call(context.Background(), nil, cmd("GET", "k")); return err }, RejectUnauthenticated},
		{"anonymous poll", func() error { _, err := g.Poll(context.Background(), "s", 1, 0); return err }, RejectUnauthenticated},
		{"forbidden", func() error { _, err := g.Call(reader, nil, cmd("SET", "k", "v")); return err }, RejectForbidden},
		{"first of the bucket", func() error { _, err := g.Call(limited, nil, cmd("GET", "k")); return err }, ""},
		{"rate limited", func() error { _, err := g.Call(limited, nil, cmd("GET", "k")); return err }, RejectRateLimited},
		{"overloaded", func() error {
			release, err := sh.Acquire(now) // hold the only slot
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			_, err = g.Call(reader, nil, cmd("GET", "k"))
			return err
		}, RejectOverloaded},
	} {
		got = nil
		err := tc.do()
		if (err == nil) != (tc.want == "") {
			t.Errorf("%s: err %v, want reason %q", tc.name, err, tc.want)
		}
		var want []string
		if tc.want != "" {
			want = []string{tc.want}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: reported %v, want %v (go test ./nodes/security -run TestGuardOnReject)", tc.name, got, want)
		}
	}
}
