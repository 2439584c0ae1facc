package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/thrift/lib/go/thrift"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// The generated `execute` processor decodes a batch of n commands with
// 2n+1 allocations besides the arguments' bytes: a *Command each, each
// command's Argv slice, and the list. The node's own decoder below reads the
// same wire form into three slabs per request (the Command structs, their
// pointers, every command's Argv headers), so a batch of 100 costs 3
// allocations instead of 201. Nothing is reused across requests: a handler
// may keep a command (a worker queue, a held reply) and no later request
// writes into it. A kept command, or its Argv (core.Command.Args), pins the
// request's slabs (up to maxCommandSlab commands, maxArgvSlab headers):
// fine for the request's life, but what is kept past the reply must copy
// Args (docs/node.md). Arguments are still one exact-size allocation each
// (proto.go): they may be kept longer (a store, a cache), and a shared
// buffer would pin the whole batch's bytes for the longest-lived one.

// FastExecute replaces p's `execute` function (h must be the handler p was
// built with) with one that decodes the commands into slabs (above);
// everything else — the handler call, the typed exceptions, the reply, the
// request abandoned with thrift.ErrAbandonRequest — is the generated
// function's.
func FastExecute(p *gen.DialKVProcessor, h gen.DialKV) {
	p.AddToProcessorMap("execute", &executeProcessor{h: h})
}

type executeProcessor struct{ h gen.DialKV }

// readExecuteArgs is DialKVExecuteArgs.Read with the commands decoded by
// readCommands.
func readExecuteArgs(ctx context.Context, iprot thrift.TProtocol, args *gen.DialKVExecuteArgs) error {
	if _, err := iprot.ReadStructBegin(ctx); err != nil {
		return thrift.PrependError(fmt.Sprintf("%T read error: ", args), err)
	}
	for {
		_, typ, id, err := iprot.ReadFieldBegin(ctx)
		if err != nil {
			return thrift.PrependError(fmt.Sprintf("%T field %d read error: ", args, id), err)
		}
		if typ == thrift.STOP {
			break
		}
		switch {
		case id == 1 && typ == thrift.STRUCT:
			err = args.ReadField1(ctx, iprot)
		case id == 2 && typ == thrift.LIST:
			args.Cmds, err = readCommands(ctx, iprot)
		default:
			err = iprot.Skip(ctx, typ)
		}
		if err != nil {
			return err
		}
		if err := iprot.ReadFieldEnd(ctx); err != nil {
			return err
		}
	}
	if err := iprot.ReadStructEnd(ctx); err != nil {
		return thrift.PrependError(fmt.Sprintf("%T read struct end error: ", args), err)
	}
	return nil
}

// readCommands reads a list<Command> into slabs.
func readCommands(ctx context.Context, iprot thrift.TProtocol) ([]*gen.Command, error) {
	// The common form in the binary protocol is decoded from the frame's
	// bytes directly (readCommandsBinary); anything else, and every error,
	// by the protocol (readCommandsProto).
	if bp, ok := iprot.(*binaryProtocol); ok {
		if fr, ok := bp.fr.(*frameReader); ok {
			if cmds, n, ok := readCommandsBinary(fr.b[fr.off:], int64(bp.cfg.GetMaxMessageSize())); ok {
				fr.consume(n)
				return cmds, nil
			}
		}
	}
	return readCommandsProto(ctx, iprot)
}

// readCommandsProto is readCommands by the protocol.
func readCommandsProto(ctx context.Context, iprot thrift.TProtocol) ([]*gen.Command, error) {
	_, size, err := iprot.ReadListBegin(ctx)
	if err != nil {
		return nil, thrift.PrependError("error reading list begin: ", err)
	}
	// Every command takes at least one byte (its STOP): a size beyond the
	// frame is a bad request, not an allocation of that size.
	if uint64(size) > iprot.Transport().RemainingBytes() {
		return nil, thrift.NewTProtocolExceptionWithType(thrift.SIZE_LIMIT, fmt.Errorf("list of %d commands in a frame of %d bytes left", size, iprot.Transport().RemainingBytes()))
	}
	// The slabs are cut for at most maxCommandSlab commands at a time, the
	// next one when the last is used up: the claimed count is only bounded
	// by the frame's bytes (one per command), and a 16 MiB frame claiming
	// 16 M commands must not allocate 48 bytes per frame byte before its
	// first bad command (or before the token and --max-batch checks).
	ptrs := make([]*gen.Command, 0, min(size, maxCommandSlab))
	var (
		cmds []gen.Command // the Command slab; refilled when used up
		argv [][]byte      // the Argv headers' slab; refilled when used up
	)
	for i := range size {
		if len(cmds) == 0 {
			cmds = make([]gen.Command, min(size-i, maxCommandSlab))
		}
		c := &cmds[0]
		cmds = cmds[1:]
		if argv, err = readCommand(ctx, iprot, c, argv, size-i); err != nil {
			return nil, err
		}
		ptrs = append(ptrs, c)
	}
	if err := iprot.ReadListEnd(ctx); err != nil {
		return nil, thrift.PrependError("error reading list end: ", err)
	}
	return ptrs, nil
}

// readCommand is Command.Read taking c's Argv from the slab argv (a new
// slab, sized for the left commands at c's argument count, when argv is
// too short); it returns what is left of the slab.
func readCommand(ctx context.Context, iprot thrift.TProtocol, c *gen.Command, argv [][]byte, left int) ([][]byte, error) {
	if _, err := iprot.ReadStructBegin(ctx); err != nil {
		return argv, thrift.PrependError(fmt.Sprintf("%T read error: ", c), err)
	}
	name := false
	for {
		_, typ, id, err := iprot.ReadFieldBegin(ctx)
		if err != nil {
			return argv, thrift.PrependError(fmt.Sprintf("%T field %d read error: ", c, id), err)
		}
		if typ == thrift.STOP {
			break
		}
		switch {
		case id == 1 && typ == thrift.STRING:
			err = c.ReadField1(ctx, iprot)
			name = true
		case id == 2 && typ == thrift.LIST:
			argv, err = readArgv(ctx, iprot, c, argv, left)
		default:
			err = iprot.Skip(ctx, typ)
		}
		if err != nil {
			return argv, err
		}
		if err := iprot.ReadFieldEnd(ctx); err != nil {
			return argv, err
		}
	}
	if err := iprot.ReadStructEnd(ctx); err != nil {
		return argv, thrift.PrependError(fmt.Sprintf("%T read struct end error: ", c), err)
	}
	if !name {
		return argv, thrift.NewTProtocolExceptionWithType(thrift.INVALID_DATA, errors.New("Required field Name is not set"))
	}
	return argv, nil
}

// maxArgvSlab bounds an Argv slab's headers (a batch of commands with many
// arguments gets several slabs); maxCommandSlab bounds a Command slab and
// the first pointer slab's capacity (a longer batch appends).
const (
	maxArgvSlab    = 4096
	maxCommandSlab = 4096
)

// readArgv is Command.ReadField2 with c.Argv cut from the slab argv.
func readArgv(ctx context.Context, iprot thrift.TProtocol, c *gen.Command, argv [][]byte, left int) ([][]byte, error) {
	_, size, err := iprot.ReadListBegin(ctx)
	if err != nil {
		return argv, thrift.PrependError("error reading list begin: ", err)
	}
	// Every argument takes at least its length prefix.
	if uint64(size) > iprot.Transport().RemainingBytes() {
		return argv, thrift.NewTProtocolExceptionWithType(thrift.SIZE_LIMIT, fmt.Errorf("%d arguments in a frame of %d bytes left", size, iprot.Transport().RemainingBytes()))
	}
	if size == 0 {
		c.Argv = [][]byte{} // as the generated reader: present, empty
		return argv, iprot.ReadListEnd(ctx)
	}
	switch {
	case size > maxArgvSlab:
		// Not from a slab, and grown by append as the arguments decode: a
		// frame claiming as many arguments as it has bytes must not
		// allocate a header for each before its first bad one.
		c.Argv = make([][]byte, 0, maxArgvSlab)
	default:
		if len(argv) < size {
			argv = make([][]byte, max(size, min(size*left, maxArgvSlab)))
		}
		// The command's share of the slab, capped so that an append to it
		// never writes into the next command's.
		c.Argv, argv = argv[:0:size], argv[size:]
	}
	for range size {
		v, err := iprot.ReadBinary(ctx)
		if err != nil {
			return argv, thrift.PrependError("error reading field 0: ", err)
		}
		c.Argv = append(c.Argv, v)
	}
	if err := iprot.ReadListEnd(ctx); err != nil {
		return argv, thrift.PrependError("error reading list end: ", err)
	}
	return argv, nil
}

// Process is the generated dialKVProcessorExecute.Process with
// readExecuteArgs and a success written by executeSuccess (and without the
// connectivity-check goroutine, which the server disables). It is a hand
// copy and must follow thrift regenerations:
// TestExecuteProcessFollowsGenerated fails when the generated function
// changes, and TestFastExecuteReplies compares the replies of both.
func (p *executeProcessor) Process(ctx context.Context, seqID int32, iprot, oprot thrift.TProtocol) (bool, thrift.TException) {
	var args gen.DialKVExecuteArgs
	if err := readExecuteArgs(ctx, iprot, &args); err != nil {
		iprot.ReadMessageEnd(ctx)
		x := thrift.NewTApplicationException(thrift.PROTOCOL_ERROR, err.Error())
		oprot.WriteMessageBegin(ctx, "execute", thrift.EXCEPTION, seqID)
		x.Write(ctx, oprot)
		oprot.WriteMessageEnd(ctx)
		oprot.Flush(ctx)
		return false, thrift.WrapTException(err)
	}
	iprot.ReadMessageEnd(ctx)
	var (
		result gen.DialKVExecuteResult
		err    thrift.TException
		msg    thrift.TStruct = &result
		typ                   = thrift.REPLY
	)
	if retval, err2 := p.h.Execute(ctx, args.Opts, args.Cmds); err2 != nil {
		err = thrift.WrapTException(err2)
		switch v := err2.(type) {
		case *gen.InvalidArgument:
			result.Invalid = v
		case *gen.Unavailable:
			result.Unavailable = v
		case *gen.Timeout:
			result.Timeout = v
		case *gen.NotLeader:
			result.NotLeader = v
		case *gen.Unauthenticated:
			result.Unauthenticated = v
		case *gen.Forbidden:
			result.Forbidden = v
		default:
			if errors.Is(err2, thrift.ErrAbandonRequest) {
				return false, err
			}
			msg = thrift.NewTApplicationException(thrift.INTERNAL_ERROR, "Internal error processing execute: "+err2.Error())
			typ = thrift.EXCEPTION
		}
	} else {
		// The generated writer's bytes, with the common replies appended
		// directly (execreply.go).
		msg = &executeSuccess{resp: retval}
	}
	var werr error
	if e := oprot.WriteMessageBegin(ctx, "execute", typ, seqID); e != nil {
		werr = e
	}
	if e := msg.Write(ctx, oprot); werr == nil && e != nil {
		werr = e
	}
	if e := oprot.WriteMessageEnd(ctx); werr == nil && e != nil {
		werr = e
	}
	if e := oprot.Flush(ctx); werr == nil && e != nil {
		werr = e
	}
	if werr != nil {
		return false, thrift.WrapTException(werr)
	}
	return true, err
}

// readCommandsBinary decodes a list<Command> from b (the binary protocol,
// at the list's header) into slabs as readCommands does, each argument one
// exact-size allocation as readArgv's, but without a protocol call per
// field: a batch of 100 made about 1,000 of them (docs/performance.md,
// issue 3, session 10). It returns the commands and how many bytes of b it
// read, or false for anything but the common form — a list of structs, each
// a name (field 1, once) and at most one list of binaries (field 2) of at
// most maxArgvSlab, every length within b and limit (the maximum message
// size) — and then readCommands decodes (or refuses) the list by the
// protocol from its start, so that every error and every rarer form is the
// generated reader's. FuzzExecuteArgs compares it with the generated
// reader; TestReadCommandsBinaryRecognises checks what it decodes itself.
func readCommandsBinary(b []byte, limit int64) ([]*gen.Command, int, bool) {
	r := frameWalk{b: b}
	n, ok := r.list(thrift.STRUCT, limit)
	if !ok {
		return nil, 0, false
	}
	// The slabs as readCommandsProto cuts them.
	ptrs := make([]*gen.Command, 0, min(n, maxCommandSlab))
	var (
		cmds []gen.Command
		argv [][]byte
	)
	for i := range n {
		if len(cmds) == 0 {
			cmds = make([]gen.Command, min(n-i, maxCommandSlab))
		}
		c := &cmds[0]
		cmds = cmds[1:]
		if argv, ok = r.command(c, argv, n-i, limit); !ok {
			return nil, 0, false
		}
		ptrs = append(ptrs, c)
	}
	return ptrs, len(b) - len(r.b), true
}

// command decodes one Command of the common form into c (see
// readCommandsBinary), its Argv cut from the slab argv as readArgv cuts it
// (left: the commands left, this one included); it returns what is left of
// the slab.
func (r *frameWalk) command(c *gen.Command, argv [][]byte, left int, limit int64) ([][]byte, bool) {
	name, args := false, false
	for {
		typ, id, ok := r.field()
		switch {
		case !ok:
			return argv, false
		case typ == thrift.STOP:
			return argv, name // (no name: the protocol's error)
		case typ == thrift.STRING && id == 1 && !name:
			s, ok := r.binary(limit)
			if !ok {
				return argv, false
			}
			c.Name, name = internString(s), true
		case typ == thrift.LIST && id == 2 && !args:
			args = true
			if argv, ok = r.argv(c, argv, left, limit); !ok {
				return argv, false
			}
		default:
			return argv, false
		}
	}
}

// argv decodes a command's list of arguments into c.Argv, from the slab
// argv as readArgv does; each argument is copied into an allocation of its
// own (readExact's: a kept argument pins nothing else).
func (r *frameWalk) argv(c *gen.Command, argv [][]byte, left int, limit int64) ([][]byte, bool) {
	n, ok := r.list(thrift.STRING, min(limit, maxArgvSlab))
	if !ok {
		return argv, false
	}
	if n == 0 {
		c.Argv = [][]byte{} // as the generated reader: present, empty
		return argv, true
	}
	if len(argv) < n {
		argv = make([][]byte, max(n, min(n*left, maxArgvSlab)))
	}
	c.Argv, argv = argv[:0:n], argv[n:]
	for range n {
		v, ok := r.binary(limit)
		if !ok {
			return argv, false
		}
		a := make([]byte, len(v))
		copy(a, v)
		c.Argv = append(c.Argv, a)
	}
	return argv, true
}

// binary reads a binary's length and returns its bytes in place (false if
// the length is negative, over limit or past the end).
func (r *frameWalk) binary(limit int64) ([]byte, bool) {
	n, ok := r.i32()
	if !ok || n < 0 || int64(n) > limit || int(n) > len(r.b) {
		return nil, false
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v, true
}
