package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// Environment variables ConnFlags read secrets from (secrets on a command
// line show in ps and shell history).
const (
	EnvPassword = "DIALKV_PASSWORD"
	EnvToken    = "DIALKV_TOKEN"
)

// ConnFlags are the TLS and login flags of `dialkv cli`, `dialkv bench`
// and `dialkv admin`: --tls-ca, --tls-cert, --tls-key, --tls-server-name, --user with
// --password-file or $DIALKV_PASSWORD, and --token-file or $DIALKV_TOKEN.
type ConnFlags struct {
	CA, Cert, Key, ServerName string
	User, PasswordFile        string
	TokenFile                 string
}

// Register adds the flags to fs.
func (f *ConnFlags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.CA, "tls-ca", "", "connect over TLS, verifying the node's certificate against this CA bundle `file`")
	fs.StringVar(&f.Cert, "tls-cert", "", "client certificate `file` for mutual TLS (needs --tls-key; its common name is the principal)")
	fs.StringVar(&f.Key, "tls-key", "", "private key `file` of --tls-cert")
	fs.StringVar(&f.ServerName, "tls-server-name", "", "name checked in the node's certificate (default: the host of --addr)")
	fs.StringVar(&f.User, "user", "", "log in as this user; the password comes from --password-file or $"+EnvPassword)
	fs.StringVar(&f.PasswordFile, "password-file", "", "`file` holding the password of --user (first line)")
	fs.StringVar(&f.TokenFile, "token-file", "", "`file` holding a bearer token (first line); or set $"+EnvToken)
}

// Dial returns the TLS configuration (nil: plain TCP) and the login
// credentials (nil: none) the flags ask for.
func (f *ConnFlags) Dial() (*tls.Config, *Credentials, error) {
	var cfg *tls.Config
	if f.CA != "" || f.Cert != "" || f.Key != "" || f.ServerName != "" {
		if (f.Cert == "") != (f.Key == "") {
			return nil, nil, errors.New("--tls-cert and --tls-key go together")
		}
		var err error
		cfg, err = clientTLS(f.CA, f.Cert, f.Key, f.ServerName)
		if err != nil {
			return nil, nil, err
		}
	}
	token := os.Getenv(EnvToken)
	if f.TokenFile != "" {
		var err error
		if token, err = readSecret(f.TokenFile, "--token-file"); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case f.User != "" && f.TokenFile != "":
		return nil, nil, errors.New("--user and --token-file exclude each other")
	case f.User != "":
		pw := os.Getenv(EnvPassword)
		if f.PasswordFile != "" {
			var err error
			if pw, err = readSecret(f.PasswordFile, "--password-file"); err != nil {
				return nil, nil, err
			}
		}
		if pw == "" {
			return nil, nil, fmt.Errorf("--user %s needs a password: --password-file FILE or $%s", f.User, EnvPassword)
		}
		return cfg, &Credentials{User: f.User, Secret: pw}, nil
	case f.PasswordFile != "":
		return nil, nil, errors.New("--password-file needs --user")
	case token != "":
		return cfg, &Credentials{Secret: token}, nil
	}
	return cfg, nil, nil
}

// readSecret reads the first line of a secret file; errors name the file,
// never its content.
func readSecret(path, flagName string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	s, _, _ := strings.Cut(string(b), "\n")
	s = strings.TrimRight(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s %s: empty", flagName, path)
	}
	return s, nil
}

// clientTLS builds a client TLS configuration (the same hardening as the
// node's: TLS 1.2 or newer, AEAD suites with forward secrecy). ca empty:
// the system roots. Errors name the file, never key material.
func clientTLS(ca, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-ca %s holds no PEM certificate", ca)
		}
		cfg.RootCAs = pool
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert %s with --tls-key %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
