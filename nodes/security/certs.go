package security

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const certsUsage = `dialkv certs: make a development CA and node and client certificates.

Usage:
  dialkv certs --out DIR [--nodes n1,n2,n3] [--clients alice,bob] [--hosts 127.0.0.1,localhost] [--days 30] [--force]

Writes DIR/ca.crt and DIR/ca.key (created once and reused afterwards, so
certificates can be added later), DIR/node-NAME.crt/.key for each node
(usable as server and client: the same certificate serves the client
listener and mutual TLS between nodes) and DIR/client-NAME.crt/.key for
each client (the common name NAME is the principal the policy file grants
rights to). Keys are ECDSA P-256, written with mode 0600. Existing
certificate files are not overwritten without --force.

These are for development and tests: the CA key sits unencrypted next to
the certificates. Use your organisation's CA in production.

Flags:
`

// CertsMain is `dialkv certs`. It returns the process exit code: 0 on
// success, 2 on bad usage, 1 on failure.
func CertsMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "certs", "directory to write the CA and certificates to")
	nodes := fs.String("nodes", "", "comma-separated node names (node certificates: server and client use)")
	clients := fs.String("clients", "", "comma-separated client names (client certificates; the name is the principal)")
	hosts := fs.String("hosts", "127.0.0.1,::1,localhost", "comma-separated IP addresses and DNS names put in every node certificate")
	days := fs.Int("days", 30, "validity of new certificates in days (the CA gets ten times as long)")
	force := fs.Bool("force", false, "overwrite existing node and client certificates")
	fs.Usage = func() {
		fmt.Fprint(stderr, certsUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dialkv certs: unexpected argument %q (see --help)\n", fs.Arg(0))
		return 2
	}
	if *days < 1 || *days > 3650 {
		fmt.Fprintf(stderr, "dialkv certs: --days %d is not in 1..3650\n", *days)
		return 2
	}
	nodeNames, err := splitNames(*nodes)
	if err == nil {
		var clientNames []string
		if clientNames, err = splitNames(*clients); err == nil {
			err = makeCerts(certRequest{
				dir: *out, nodes: nodeNames, clients: clientNames, hosts: splitList(*hosts),
				validity: time.Duration(*days) * 24 * time.Hour, force: *force, now: time.Now(),
			}, stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "dialkv certs: %v\n", err)
		return 1
	}
	return 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func splitNames(s string) ([]string, error) {
	names := splitList(s)
	for _, n := range names {
		if !nameRE.MatchString(n) {
			return nil, fmt.Errorf("name %q: want 1-128 of letters, digits and ._@:- starting with a letter or digit", n)
		}
	}
	return names, nil
}

type certRequest struct {
	dir            string
	nodes, clients []string
	hosts          []string
	validity       time.Duration
	force          bool
	now            time.Time
}

type issuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func makeCerts(r certRequest, stdout io.Writer) error {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", r.dir, err)
	}
	ca, created, err := loadOrCreateCA(r)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stdout, "wrote %s and %s (new development CA)\n", filepath.Join(r.dir, "ca.crt"), filepath.Join(r.dir, "ca.key"))
	} else {
		fmt.Fprintf(stdout, "reusing CA %s\n", filepath.Join(r.dir, "ca.crt"))
	}
	for _, n := range r.nodes {
		tmpl := leafTemplate(n, r)
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = append(tmpl.DNSNames, n)
		for _, h := range r.hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
		if err := issue(r, ca, tmpl, "node-"+n, stdout); err != nil {
			return err
		}
	}
	for _, c := range r.clients {
		tmpl := leafTemplate(c, r)
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		if err := issue(r, ca, tmpl, "client-"+c, stdout); err != nil {
			return err
		}
	}
	return nil
}

func serial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func leafTemplate(cn string, r certRequest) *x509.Certificate {
	return &x509.Certificate{
		Subject:   pkix.Name{CommonName: cn, Organization: []string{"dialkv development"}},
		NotBefore: r.now.Add(-5 * time.Minute), // tolerate small clock skew between machines
		NotAfter:  r.now.Add(r.validity),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
}

func loadOrCreateCA(r certRequest) (issuer, bool, error) {
	crtPath, keyPath := filepath.Join(r.dir, "ca.crt"), filepath.Join(r.dir, "ca.key")
	crtPEM, errC := os.ReadFile(crtPath)
	keyPEM, errK := os.ReadFile(keyPath)
	switch {
	case errC == nil && errK == nil:
		cert, err := parseCertPEM(crtPEM)
		if err != nil {
			return issuer{}, false, fmt.Errorf("existing CA %s: %w", crtPath, err)
		}
		key, err := parseKeyPEM(keyPEM)
		if err != nil {
			return issuer{}, false, fmt.Errorf("existing CA key %s: %w", keyPath, err)
		}
		return issuer{cert: cert, key: key}, false, nil
	case errC == nil || errK == nil:
		return issuer{}, false, fmt.Errorf("found only one of %s and %s; remove it or restore the other", crtPath, keyPath)
	case !errors.Is(errC, os.ErrNotExist) || !errors.Is(errK, os.ErrNotExist):
		return issuer{}, false, fmt.Errorf("read CA: %v / %v", errC, errK)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return issuer{}, false, fmt.Errorf("CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return issuer{}, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "dialkv development CA", Organization: []string{"dialkv development"}},
		NotBefore:             r.now.Add(-5 * time.Minute),
		NotAfter:              r.now.Add(10 * r.validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return issuer{}, false, fmt.Errorf("CA certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writeKey(keyPath, key, false); err != nil {
		return issuer{}, false, err
	}
	if err := writePEM(crtPath, "CERTIFICATE", der, 0o644, false); err != nil {
		return issuer{}, false, err
	}
	return issuer{cert: cert, key: key}, true, nil
}

func issue(r certRequest, ca issuer, tmpl *x509.Certificate, base string, stdout io.Writer) error {
	crtPath, keyPath := filepath.Join(r.dir, base+".crt"), filepath.Join(r.dir, base+".key")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("%s key: %w", base, err)
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return fmt.Errorf("%s certificate: %w", base, err)
	}
	if err := writeKey(keyPath, key, r.force); err != nil {
		return err
	}
	if err := writePEM(crtPath, "CERTIFICATE", der, 0o644, r.force); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s (CN %s)\n", crtPath, keyPath, tmpl.Subject.CommonName)
	return nil
}

func writeKey(path string, key *ecdsa.PrivateKey, force bool) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", path, err)
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600, force)
}

func writePEM(path, typ string, der []byte, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, mode)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s exists (use --force to overwrite)", path)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: der}); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, err
	}
	if !c.IsCA {
		return nil, errors.New("not a CA certificate")
	}
	return c, nil
}

func parseKeyPEM(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return s, nil
}
