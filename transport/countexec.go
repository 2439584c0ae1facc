package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/thrift/lib/go/thrift"

	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// CountExecute is DecodeExecute for a caller that only needs to know how
// many replies came and how many of them are errors (dialkv bench, which
// shares the machine's cores with the node it measures): it walks the
// reply frame (without its 4-byte header) in place and builds nothing —
// no ExecuteResponse, no Reply per command, no copy of a value — where
// DecodeExecute allocates a Reply and copies its value for every command.
// Only replies of scalar values (kind, str, int_val, dbl, version) are
// walked, checked as DecodeExecute checks them (message name, type and
// sequence number, every field's wire type and length, a kind in every
// reply, the replies present). A frame that answers with an exception, or
// whose replies nest (an array, an error struct, siblings: field 5, 6 or 8
// of a Reply), is decoded whole by DecodeExecute, so that the counts and
// errors are DecodeExecute's by construction.
func (c *ClientCodec) CountExecute(frame []byte, seq int32) (replies, failed int, err error) {
	// The common frame in the binary protocol is counted without the
	// protocol (execbinary.go); a frame over the maximum is not, so that a
	// field's length is checked against the maximum as the walk checks it.
	if c.binary && len(frame) <= c.maxLen {
		if replies, failed, ok := countBinary(frame, seq); ok {
			return replies, failed, nil
		}
	}
	var res executeCount
	err = c.recv(frame, seq, "execute", &res)
	switch {
	case errors.Is(err, errCountNested):
		return c.decodeCount(frame, seq)
	case err != nil:
		return 0, 0, err
	case res.exception || !res.success:
		// An exception (or no result at all): rare, decoded whole, so
		// that the answer is DecodeExecute's (its typed error).
		return c.decodeCount(frame, seq)
	}
	return res.replies, res.failed, nil
}

// decodeCount is CountExecute by DecodeExecute: the frame decoded whole,
// its replies and error replies counted.
func (c *ClientCodec) decodeCount(frame []byte, seq int32) (replies, failed int, err error) {
	resp, err := c.DecodeExecute(frame, seq)
	if err != nil {
		return 0, 0, err
	}
	for _, r := range resp.Replies {
		if r.Kind == gen.ReplyKind_ERROR {
			failed++
		}
	}
	return len(resp.Replies), failed, nil
}

// errCountNested stops a count at a reply that nests (field 5, 6 or 8 of
// the type the generated reader decodes): the generated reader checks what
// is inside (required fields, list element types read as declared by the
// IDL, no depth limit) and a skip would not, so CountExecute decodes such a
// frame whole instead.
var errCountNested = errors.New("transport: a nested reply is decoded, not counted")

// executeCount is a DialKVExecuteResult read by counting: the replies of
// its success and the error replies among them.
type executeCount struct {
	success, exception bool
	replies, failed    int
}

var _ thrift.TStruct = (*executeCount)(nil)

// errCountWrite is executeCount's Write: it is only ever read.
var errCountWrite = errors.New("transport: a counted execute result is not written")

// Write is not supported: a counted result is only read.
func (r *executeCount) Write(context.Context, thrift.TProtocol) error { return errCountWrite }

// Read walks a DialKVExecuteResult: field 0 is the ExecuteResponse,
// fields 4, 5, 6, 8, 9 and 10 the exceptions (noted, then skipped),
// anything else skipped as the generated reader skips it.
func (r *executeCount) Read(ctx context.Context, p thrift.TProtocol) error {
	return readStruct(ctx, p, "DialKVExecuteResult", func(id int16, typ thrift.TType) (bool, error) {
		switch {
		case id == 0 && typ == thrift.STRUCT:
			r.success = true
			return true, r.readResponse(ctx, p)
		case id >= 4 && id <= 10 && id != 7 && typ == thrift.STRUCT:
			r.exception = true
		}
		return false, nil
	})
}

// readResponse walks an ExecuteResponse, counting its replies.
func (r *executeCount) readResponse(ctx context.Context, p thrift.TProtocol) error {
	seen := false
	err := readStruct(ctx, p, "ExecuteResponse", func(id int16, typ thrift.TType) (bool, error) {
		switch {
		case id == 1 && typ == thrift.LIST:
			seen = true
			return true, r.readReplies(ctx, p)
		case typ == thrift.STRING:
			return true, skipBinary(ctx, p) // token, served_by
		}
		return false, nil
	})
	if err == nil && !seen {
		err = thrift.NewTProtocolExceptionWithType(thrift.INVALID_DATA, errors.New("Required field Replies is not set"))
	}
	return err
}

// readReplies walks list<Reply>.
func (r *executeCount) readReplies(ctx context.Context, p thrift.TProtocol) error {
	// As the generated reader: the elements are read as structs whatever
	// type the header claims, and a second list replaces the first.
	_, size, err := p.ReadListBegin(ctx)
	if err != nil {
		return thrift.PrependError("error reading list begin: ", err)
	}
	r.replies, r.failed = 0, 0
	for range size {
		kind, err := readReplyKind(ctx, p)
		if err != nil {
			return err
		}
		r.replies++
		if kind == gen.ReplyKind_ERROR {
			r.failed++
		}
	}
	if err := p.ReadListEnd(ctx); err != nil {
		return thrift.PrependError("error reading list end: ", err)
	}
	return nil
}

// readReplyKind walks a Reply and returns its kind (required); its value
// is skipped in place. A nested value (array, error, siblings) stops the
// walk with errCountNested.
func readReplyKind(ctx context.Context, p thrift.TProtocol) (gen.ReplyKind, error) {
	var (
		kind gen.ReplyKind
		seen bool
	)
	err := readStruct(ctx, p, "Reply", func(id int16, typ thrift.TType) (bool, error) {
		switch {
		case (id == 5 || id == 8) && typ == thrift.LIST, id == 6 && typ == thrift.STRUCT:
			// Of another wire type the generated reader skips the field
			// too: only these are decoded (and checked) inside.
			return true, errCountNested
		case id == 1 && typ == thrift.I32:
			v, err := p.ReadI32(ctx)
			if err != nil {
				return true, thrift.PrependError("error reading field 1: ", err)
			}
			kind, seen = gen.ReplyKind(v), true
			return true, nil
		case typ == thrift.STRING:
			return true, skipBinary(ctx, p) // str
		}
		return false, nil
	})
	if err == nil && !seen {
		err = thrift.NewTProtocolExceptionWithType(thrift.INVALID_DATA, errors.New("Required field Kind is not set"))
	}
	return kind, err
}

// readStruct reads a struct's fields, giving each to field, which reports
// whether it read the field's value; a field it did not read is skipped
// (as the generated readers skip a field they do not know).
func readStruct(ctx context.Context, p thrift.TProtocol, name string, field func(id int16, typ thrift.TType) (bool, error)) error {
	if _, err := p.ReadStructBegin(ctx); err != nil {
		return thrift.PrependError(name+" read error: ", err)
	}
	for {
		_, typ, id, err := p.ReadFieldBegin(ctx)
		if err != nil {
			return thrift.PrependError(fmt.Sprintf("%s field %d read error: ", name, id), err)
		}
		if typ == thrift.STOP {
			break
		}
		done, err := field(id, typ)
		if err == nil && !done {
			err = p.Skip(ctx, typ)
		}
		if err != nil {
			return err
		}
		if err := p.ReadFieldEnd(ctx); err != nil {
			return err
		}
	}
	if err := p.ReadStructEnd(ctx); err != nil {
		return thrift.PrependError(name+" read struct end error: ", err)
	}
	return nil
}

// skipBinary skips a binary field's value: in place on a frame held in
// memory (the protocols of this package over a frame reader), read and
// dropped otherwise.
func skipBinary(ctx context.Context, p thrift.TProtocol) error {
	var (
		size int64
		fr   inPlaceReader
		cfg  *thrift.TConfiguration
	)
	switch bp := p.(type) {
	case *binaryProtocol:
		if bp.fr == nil {
			break
		}
		n, err := bp.ReadI32(ctx)
		if err != nil {
			return err
		}
		size, fr, cfg = int64(n), bp.fr, bp.cfg
	case *compactProtocol:
		if bp.fr == nil || bp.br == nil {
			break
		}
		n, err := bp.readLength()
		if err != nil {
			return err
		}
		size, fr, cfg = int64(n), bp.fr, bp.cfg
	}
	if fr == nil {
		_, err := p.ReadBinary(ctx)
		return err
	}
	// The checks of readExact, without the copy.
	if err := checkLength(size, fr.RemainingBytes(), cfg, "binary field"); err != nil {
		return err
	}
	fr.consume(int(size))
	return nil
}
