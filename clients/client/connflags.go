package client

import "github.com/dialkv/dialkv/transport"

// Environment variables ConnFlags read secrets from (secrets on a command
// line show in ps and shell history).
const (
	EnvPassword = transport.EnvPassword
	EnvToken    = transport.EnvToken
)

// ConnFlags are the TLS and login flags of `dialkv cli` and `dialkv
// bench` (transport.ConnFlags, shared with `dialkv admin`), with Options
// for the Go client.
type ConnFlags struct {
	transport.ConnFlags
}

// Options returns the client options the flags ask for.
func (f *ConnFlags) Options() ([]Option, error) {
	cfg, login, err := f.Dial()
	if err != nil {
		return nil, err
	}
	var opts []Option
	if cfg != nil {
		opts = append(opts, WithTLS(cfg))
	}
	if login != nil {
		l := *login
		opts = append(opts, func(c *config) { c.login = &l })
	}
	return opts, nil
}
