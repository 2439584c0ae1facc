package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/chzyer/readline"

	"github.com/dialkv/dialkv/clients/client"
	"github.com/dialkv/dialkv/core"
)

// Executor runs one command in a namespace ("" is the default namespace)
// and returns the server's reply. A command the server rejects comes back
// either as an error reply or as an error wrapping a *core.Error; any other
// error is a transport failure.
type Executor interface {
	Do(ctx context.Context, namespace string, cmd core.Command) (core.Reply, error)
	Close() error
}

// Dialer connects to a server with the client options of the TLS and
// login flags.
type Dialer func(ctx context.Context, addr string, opts ...client.Option) (Executor, error)

// Config is what `dialkv cli` was asked to do.
type Config struct {
	Addr      string
	Namespace string
	Raw       bool          // redis-cli --raw output
	ExitOnErr bool          // exit status 1 when a command replies with an error (redis-cli -e)
	Timeout   time.Duration // per command
	HistFile  string        // interactive history ("" for none)
	Conn      client.ConnFlags
}

const usage = `Usage: dialkv cli [--addr HOST:PORT] [--namespace NS] [flags] [COMMAND [ARG ...]]

A redis-cli-like client. With a command, runs it once and prints the reply;
without one, reads commands: interactively with line editing and history
when standard input is a terminal, one command per line otherwise.
Arguments are split and quoted as redis-cli does ("a b", 'c', "\x00\n").

Examples:
  dialkv cli --addr 127.0.0.1:7379 SET greeting "hello world"
  dialkv cli --addr 127.0.0.1:7379 GET greeting
  dialkv cli --addr 127.0.0.1:7379              (interactive; "help" lists the commands)
  printf 'INCR n\nINCR n\n' | dialkv cli        (one command per line)
  DIALKV_PASSWORD=... dialkv cli --tls-ca certs/ca.crt --user alice GET k   (TLS and login)
  dialkv cli --tls-ca certs/ca.crt --tls-cert certs/client-alice.crt --tls-key certs/client-alice.key GET k

Flags:
`

// Main runs `dialkv cli`.
func Main(args []string, stdout, stderr io.Writer) int {
	return Run(args, os.Stdin, stdout, stderr, dialClient)
}

// Run is Main with its input and dialer as parameters, for tests.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer, dial Dialer) int {
	cfg, cmd, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "dialkv cli: %v\n", err)
		return 2
	}
	copts, err := cfg.Conn.Options()
	if err != nil {
		fmt.Fprintf(stderr, "dialkv cli: %v\n", err)
		return 2
	}
	ctx := context.Background()
	exec, err := dial(ctx, cfg.Addr, copts...)
	if err != nil {
		fmt.Fprintf(stderr, "Could not connect to dialkv at %s: %v\n", cfg.Addr, err)
		return 1
	}
	defer exec.Close()
	s := &session{cfg: cfg, exec: exec, out: stdout, errw: stderr, ns: cfg.Namespace, rl: noPrompt{}, subCtx: untilInterrupt}
	if len(cmd) > 0 {
		bargs := make([][]byte, len(cmd))
		for i, a := range cmd {
			bargs[i] = []byte(a)
		}
		st := s.run(ctx, bargs)
		return st.exitCode(cfg.ExitOnErr)
	}
	if f, ok := stdin.(*os.File); ok && readline.IsTerminal(int(f.Fd())) {
		return s.interactive(ctx, f)
	}
	return s.lines(ctx, stdin)
}

func parseFlags(args []string, stderr io.Writer) (Config, []string, error) {
	fs := flag.NewFlagSet("dialkv cli", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := Config{}
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:7379", "server address `HOST:PORT`")
	fs.StringVar(&cfg.Namespace, "namespace", "", "namespace to run commands in (default: the default namespace)")
	fs.BoolVar(&cfg.Raw, "raw", false, "raw output, as redis-cli --raw (no quotes, no (integer) tags)")
	fs.BoolVar(&cfg.ExitOnErr, "e", false, "exit with status 1 when a command replies with an error (as redis-cli -e)")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "deadline of each command")
	hist := ""
	if home, err := os.UserHomeDir(); err == nil {
		hist = filepath.Join(home, ".dialkv_history")
	}
	if h := os.Getenv("DIALKV_HISTFILE"); h != "" {
		hist = h
	}
	cfg.Conn.Register(fs)
	fs.StringVar(&cfg.HistFile, "history", hist, "interactive history `file` (\"\" for none; env DIALKV_HISTFILE)")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	if cfg.Addr == "" {
		return cfg, nil, errors.New("--addr is empty")
	}
	if cfg.Timeout <= 0 {
		return cfg, nil, fmt.Errorf("--timeout %v: must be positive", cfg.Timeout)
	}
	return cfg, fs.Args(), nil
}

// status is the outcome of one input line.
type status int

const (
	stOK       status = iota
	stErrReply        // the server replied with an error
	stFailed          // transport failure or unusable input
	stQuit
)

func (s status) exitCode(exitOnErr bool) int {
	switch s {
	case stFailed:
		return 1
	case stErrReply:
		if exitOnErr {
			return 1
		}
	}
	return 0
}

type session struct {
	cfg  Config
	exec Executor
	out  io.Writer
	errw io.Writer
	ns   string
	rl   prompter

	// MULTI ... EXEC state.
	multi   bool
	dirty   bool // a command was rejected while queueing: EXEC aborts
	queued  []core.Command
	watched []core.Condition
	// subCtx bounds a SUBSCRIBE loop: by default until Ctrl-C.
	subCtx func(context.Context) (context.Context, context.CancelFunc)
}

// prompter is the line editor's prompt setter (a no-op outside the
// interactive mode).
type prompter interface{ SetPrompt(string) }

type noPrompt struct{}

func (noPrompt) SetPrompt(string) {}

// line runs one input line.
func (s *session) line(ctx context.Context, line string) status {
	args, err := SplitArgs(line)
	if err != nil {
		fmt.Fprintln(s.out, "Invalid argument(s)")
		return stFailed
	}
	if len(args) == 0 {
		return stOK
	}
	// redis-cli: a leading number repeats the command ("3 INCR n").
	if n, err := strconv.Atoi(string(args[0])); err == nil && len(args) > 1 {
		if n <= 0 {
			fmt.Fprintln(s.out, "Invalid argument(s)")
			return stFailed
		}
		worst := stOK
		for range n {
			if st := s.run(ctx, args[1:]); st > worst {
				worst = st
			}
		}
		return worst
	}
	return s.run(ctx, args)
}

// run executes one command: a CLI-side one (help, quit, clear) or one the
// server runs.
func (s *session) run(ctx context.Context, args [][]byte) status {
	name := strings.ToUpper(string(args[0]))
	switch name {
	case "HELP", "?":
		rest := make([]string, 0, len(args)-1)
		for _, a := range args[1:] {
			rest = append(rest, string(a))
		}
		writeHelp(s.out, rest)
		return stOK
	case "QUIT", "EXIT":
		return stQuit
	case "USE":
		if len(args) != 2 {
			fmt.Fprintln(s.out, "(error) ERR wrong number of arguments for 'use' command (USE namespace; USE \"\" for the default)")
			return stErrReply
		}
		s.ns = string(args[1])
		s.rl.SetPrompt(s.prompt())
		fmt.Fprintln(s.out, "OK")
		return stOK
	case "CLEAR":
		fmt.Fprint(s.out, "\x1b[H\x1b[2J")
		return stOK
	}
	cmd := core.Command{Name: name, Args: args[1:]}
	switch name {
	case "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH":
		return s.txnCommand(ctx, cmd)
	case "SUBSCRIBE", "PSUBSCRIBE":
		if s.multi {
			return s.print(core.ErrorReply(core.Errorf(core.CodeErr, "%s inside MULTI is not allowed", name)), nil)
		}
		return s.subscribe(ctx, cmd)
	}
	if s.multi {
		if !core.KnownCommand(name) {
			// As Redis: reject at queue time and abort the transaction.
			s.dirty = true
			return s.print(core.ErrorReply(core.Errorf(core.CodeUnknownCommand, "unknown command '%s'", name)), nil)
		}
		s.queued = append(s.queued, cmd)
		return s.print(core.Reply{Kind: core.KindStatus, Str: []byte("QUEUED")}, nil)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return s.print(s.exec.Do(ctx, s.ns, cmd))
}

// print shows a reply (or a transport error) and classifies it.
func (s *session) print(reply core.Reply, err error) status {
	if err != nil {
		var ce *core.Error
		if errors.As(err, &ce) {
			fmt.Fprint(s.out, FormatErr(ce))
			return stErrReply
		}
		fmt.Fprintf(s.out, "(error) %v\n", err)
		return stFailed
	}
	if s.cfg.Raw {
		fmt.Fprint(s.out, FormatRaw(reply))
	} else {
		fmt.Fprint(s.out, Format(reply))
	}
	if reply.IsError() {
		return stErrReply
	}
	return stOK
}

// lines runs one command per line of r (standard input that is not a
// terminal). The exit status is that of the worst line.
func (s *session) lines(ctx context.Context, r io.Reader) int {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	worst := 0
	for sc.Scan() {
		st := s.line(ctx, sc.Text())
		if st == stQuit {
			break
		}
		if c := st.exitCode(s.cfg.ExitOnErr); c > worst {
			worst = c
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(s.errw, "dialkv cli: reading standard input: %v\n", err)
		return 1
	}
	return worst
}

func (s *session) prompt() string {
	p := s.cfg.Addr
	if s.ns != "" {
		p += "[" + s.ns + "]"
	}
	if s.multi {
		p += "(TX)"
	}
	return p + "> "
}

// interactive runs the read-eval-print loop with line editing and history.
func (s *session) interactive(ctx context.Context, in *os.File) int {
	rl, err := readline.NewEx(&readline.Config{
		Prompt:            s.prompt(),
		HistoryFile:       s.cfg.HistFile,
		AutoComplete:      completer{},
		InterruptPrompt:   "^C",
		EOFPrompt:         "",
		HistorySearchFold: true,
		Stdin:             in,
		Stdout:            s.out,
		Stderr:            s.errw,
	})
	if err != nil {
		fmt.Fprintf(s.errw, "dialkv cli: line editor: %v\n", err)
		return s.lines(ctx, in)
	}
	defer rl.Close()
	s.rl = rl
	for {
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			if line == "" {
				return 0
			}
			continue
		}
		if err != nil { // io.EOF: Ctrl-D
			return 0
		}
		if s.line(ctx, line) == stQuit {
			return 0
		}
	}
}

// completer completes command names (the first word of a line).
type completer struct{}

var _ readline.AutoCompleter = completer{}

func (completer) Do(line []rune, pos int) ([][]rune, int) {
	word := string(line[:pos])
	if strings.ContainsAny(word, " \t") {
		return nil, 0
	}
	up := strings.ToUpper(word)
	lower := word != "" && word == strings.ToLower(word)
	var out [][]rune
	for _, n := range commandNames() {
		if strings.HasPrefix(n, up) {
			rest := n[len(up):]
			if lower { // keep the case the user types in
				rest = strings.ToLower(rest)
			}
			out = append(out, []rune(rest+" "))
		}
	}
	return out, len(word)
}
