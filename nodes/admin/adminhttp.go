package admin

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/dialkv/dialkv/transport"
)

// AdminHTTP calls nodes' admin HTTP APIs (dialkv node --admin: backup,
// checkpoints, raft import) with the credentials of the connection flags
// (transport.ConnFlags): over HTTPS when TLS is set (a client certificate
// in it is presented), and with a login as an Authorization header (a
// token as "Bearer", a user and password as "Basic"). The zero value is
// plain HTTP without credentials, for nodes without TLS.
type AdminHTTP struct {
	TLS   *tls.Config            // nil: plain HTTP
	Login *transport.Credentials // nil: no Authorization header
}

// adminHTTP builds the AdminHTTP the flags ask for.
func adminHTTP(f *transport.ConnFlags) (AdminHTTP, error) {
	cfg, login, err := f.Dial()
	if err != nil {
		return AdminHTTP{}, fmt.Errorf("credentials: %w", err)
	}
	return AdminHTTP{TLS: cfg, Login: login}, nil
}

// client is an HTTP client with this TLS configuration and timeout.
func (a AdminHTTP) client(timeout time.Duration) *http.Client {
	hc := &http.Client{Timeout: timeout}
	if a.TLS != nil {
		hc.Transport = &http.Transport{TLSClientConfig: a.TLS.Clone(), Proxy: http.ProxyFromEnvironment,
			TLSHandshakeTimeout: 10 * time.Second}
	}
	return hc
}

// request makes a request to path (with its query) at the admin address
// addr, with the credentials.
func (a AdminHTTP) request(ctx context.Context, method, addr, path string, body io.Reader) (*http.Request, error) {
	scheme := "http://"
	if a.TLS != nil {
		scheme = "https://"
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+addr+path, body)
	if err != nil {
		return nil, err
	}
	if a.Login != nil {
		if a.Login.User != "" {
			req.SetBasicAuth(a.Login.User, a.Login.Secret)
		} else {
			req.Header.Set("Authorization", "Bearer "+a.Login.Secret)
		}
	}
	return req, nil
}

// do sends a body-less request and returns the response; a status other
// than 200 is an error with the node's message (401 and 403 say which
// credentials the node wants).
func (a AdminHTTP) do(hc *http.Client, method, addr, path string) (*http.Response, error) {
	req, err := a.request(context.Background(), method, addr, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, statusErr(resp, b)
	}
	return resp, nil
}

// statusErr describes a refused admin request.
func statusErr(resp *http.Response, body []byte) error {
	msg := strings.TrimSpace(string(body))
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: %s (give credentials with admin on \"*\": --tls-cert/--tls-key, --token-file or --user)", resp.Status, msg)
	case http.StatusForbidden:
		return fmt.Errorf("%s: %s (the principal needs an admin grant on \"*\", or a node certificate)", resp.Status, msg)
	}
	return fmt.Errorf("%s: %s", resp.Status, msg)
}
