package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/dialkv/dialkv/core"
)

func errReply(format string, args ...any) core.Reply {
	return core.ErrorReply(core.Errorf(core.CodeErr, format, args...))
}

// txnCommand handles MULTI, EXEC, DISCARD, WATCH and UNWATCH. Commands
// between MULTI and EXEC are queued in the CLI and sent as one transaction
// at EXEC. WATCH key reads the key's version (core's VERSION command) and
// makes "the key still has that version" a condition of the next
// transaction: if another client changed it, EXEC fails with CONDFAILED
// (where Redis would print (nil)) and nothing is applied.
func (s *session) txnCommand(ctx context.Context, cmd core.Command) status {
	defer func() { s.rl.SetPrompt(s.prompt()) }()
	switch cmd.Name {
	case "MULTI":
		if s.multi {
			return s.print(errReply("MULTI calls can not be nested"), nil)
		}
		if _, ok := s.exec.(Transactor); !ok {
			return s.print(errReply("this connection cannot run transactions"), nil)
		}
		s.multi, s.queued, s.dirty = true, nil, false
		return s.print(core.OK(), nil)
	case "DISCARD":
		if !s.multi {
			return s.print(errReply("DISCARD without MULTI"), nil)
		}
		s.multi, s.queued, s.watched = false, nil, nil
		return s.print(core.OK(), nil)
	case "UNWATCH":
		s.watched = nil
		return s.print(core.OK(), nil)
	case "WATCH":
		if s.multi {
			return s.print(errReply("WATCH inside MULTI is not allowed"), nil)
		}
		if len(cmd.Args) == 0 {
			return s.print(errReply("wrong number of arguments for 'watch' command"), nil)
		}
		for _, k := range cmd.Args {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			r, err := s.exec.Do(cctx, s.ns, core.Command{Name: "VERSION", Args: [][]byte{k}})
			cancel()
			if err != nil || r.Kind != core.KindInt {
				if err == nil && r.Kind != core.KindError {
					r = errReply("VERSION %s replied %s", Quote(k), strings.TrimSpace(Format(r)))
				}
				return s.print(r, err)
			}
			s.watched = append(s.watched, core.Condition{Key: k, Kind: core.CondVersion, Version: uint64(r.Int)})
		}
		return s.print(core.OK(), nil)
	}
	// EXEC
	if !s.multi {
		return s.print(errReply("EXEC without MULTI"), nil)
	}
	queued, conds, dirty := s.queued, s.watched, s.dirty
	s.multi, s.queued, s.watched, s.dirty = false, nil, nil, false
	if dirty {
		return s.print(core.ErrorReply(&core.Error{Code: "EXECABORT", Msg: "Transaction discarded because of previous errors."}), nil)
	}
	if len(queued) == 0 {
		return s.print(core.Array(), nil)
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return s.print(s.exec.(Transactor).Txn(cctx, s.ns, conds, queued))
}

// untilInterrupt is the default bound of a SUBSCRIBE loop: Ctrl-C.
func untilInterrupt(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt)
}

// subscribe runs SUBSCRIBE channel ... or PSUBSCRIBE pattern ...: it prints
// the confirmations and then every message as redis-cli does, until Ctrl-C
// (then it unsubscribes and returns to the prompt).
func (s *session) subscribe(ctx context.Context, cmd core.Command) status {
	sb, ok := s.exec.(Subscriber)
	if !ok {
		return s.print(errReply("this connection cannot subscribe"), nil)
	}
	if len(cmd.Args) == 0 {
		return s.print(errReply("wrong number of arguments for '%s' command", strings.ToLower(cmd.Name)), nil)
	}
	names := make([]string, len(cmd.Args))
	for i, a := range cmd.Args {
		names[i] = string(a)
	}
	var channels, patterns []string
	kind := "subscribe"
	if cmd.Name == "PSUBSCRIBE" {
		patterns, kind = names, "psubscribe"
	} else {
		channels = names
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	sub, err := sb.Subscribe(cctx, s.ns, channels, patterns)
	cancel()
	if err != nil {
		return s.print(core.Reply{}, err)
	}
	fmt.Fprintln(s.out, "Reading messages... (press Ctrl-C to quit)")
	for i, n := range names {
		fmt.Fprint(s.out, Format(core.Array(core.Bulk([]byte(kind)), core.Bulk([]byte(n)), core.Int(int64(i+1)))))
	}
	loopCtx, stop := s.subCtx(ctx)
	defer stop()
	st := stOK
	for loopCtx.Err() == nil {
		msgs, err := sub.Poll(loopCtx, 100, time.Second)
		if err != nil {
			if loopCtx.Err() != nil {
				break
			}
			st = s.print(core.Reply{}, err)
			break
		}
		for _, m := range msgs {
			var r core.Reply
			if m.Pattern != "" {
				r = core.Array(core.Bulk([]byte("pmessage")), core.Bulk([]byte(m.Pattern)), core.Bulk([]byte(m.Channel)), core.Bulk(m.Payload))
			} else {
				r = core.Array(core.Bulk([]byte("message")), core.Bulk([]byte(m.Channel)), core.Bulk(m.Payload))
			}
			if s.cfg.Raw {
				fmt.Fprint(s.out, FormatRaw(r))
			} else {
				fmt.Fprint(s.out, Format(r))
			}
		}
	}
	uctx, cancel2 := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel2()
	if err := sub.Close(uctx); err != nil && st == stOK {
		fmt.Fprintf(s.errw, "dialkv cli: unsubscribe: %v\n", err)
	}
	return st
}
