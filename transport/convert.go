package transport

import (
	"fmt"

	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// CommandToCore converts a wire command. A nil command is an error.
func CommandToCore(c *gen.Command) (core.Command, error) {
	if c == nil {
		return core.Command{}, fmt.Errorf("transport: missing command")
	}
	return core.Command{Name: c.Name, Args: c.Argv}, nil
}

// CommandsToCore converts a list of wire commands.
func CommandsToCore(cs []*gen.Command) ([]core.Command, error) {
	out := make([]core.Command, len(cs))
	for i, c := range cs {
		cc, err := CommandToCore(c)
		if err != nil {
			return nil, fmt.Errorf("transport: command %d: %w", i, err)
		}
		out[i] = cc
	}
	return out, nil
}

// CommandFromCore converts a command for the wire.
func CommandFromCore(c core.Command) *gen.Command {
	return &gen.Command{Name: c.Name, Argv: c.Args}
}

// CondToCore converts a wire transaction condition.
func CondToCore(c *gen.Condition) (core.Condition, error) {
	if c == nil {
		return core.Condition{}, fmt.Errorf("transport: missing condition")
	}
	out := core.Condition{Key: c.Key, Value: c.Value}
	if c.Version != nil {
		out.Version = uint64(*c.Version)
	}
	switch c.Kind {
	case gen.ConditionKind_VERSION:
		out.Kind = core.CondVersion
	case gen.ConditionKind_VALUE:
		out.Kind = core.CondValue
	case gen.ConditionKind_EXISTS:
		out.Kind = core.CondExists
	case gen.ConditionKind_ABSENT:
		out.Kind = core.CondAbsent
	default:
		return core.Condition{}, fmt.Errorf("transport: unknown condition kind %d", c.Kind)
	}
	return out, nil
}

// CondFromCore converts a condition for the wire.
func CondFromCore(c core.Condition) *gen.Condition {
	out := &gen.Condition{Key: c.Key}
	switch c.Kind {
	case core.CondVersion:
		out.Kind = gen.ConditionKind_VERSION
		v := int64(c.Version)
		out.Version = &v
	case core.CondValue:
		out.Kind = gen.ConditionKind_VALUE
		out.Value = c.Value
		if out.Value == nil {
			out.Value = []byte{}
		}
	case core.CondExists:
		out.Kind = gen.ConditionKind_EXISTS
	case core.CondAbsent:
		out.Kind = gen.ConditionKind_ABSENT
	}
	return out
}

// The codes package consistency defines for strategy replies (transport may
// not import consistency; the strings are the contract).
const (
	codeUnavailable core.Code = "UNAVAILABLE"
	codeTimeout     core.Code = "TIMEOUT"
)

// maxReplyDepth bounds the nesting of array replies accepted from the wire.
const maxReplyDepth = 32

// ReplyFromCore converts a core reply for the wire. siblings are concurrent
// values found by a quorum read (nil: none).
func ReplyFromCore(r core.Reply, siblings [][]byte) *gen.Reply {
	out := &gen.Reply{}
	var version *int64
	if r.Version != 0 {
		version = new(int64)
	}
	replyFromCore(out, r, siblings, version, nil)
	return out
}

// RepliesFromCore converts the n replies of a batch for the wire, as
// ReplyFromCore converts each (reply(i) returns the i-th reply and its
// siblings), with the top-level replies, their versions and integers in
// a few allocations for the whole batch instead of one to three for each
// reply.
func RepliesFromCore(n int, reply func(i int) (core.Reply, [][]byte)) []*gen.Reply {
	out := make([]*gen.Reply, n)
	rs := make([]gen.Reply, n)
	var nums []int64 // versions and integers, two slots a reply
	for i := range rs {
		r, siblings := reply(i)
		var version, num *int64
		if r.Version != 0 || r.Kind == core.KindInt {
			if nums == nil {
				nums = make([]int64, 2*(n-i))
			}
			version, num = &nums[0], &nums[1]
			nums = nums[2:]
		}
		if r.Version == 0 {
			version = nil
		}
		replyFromCore(&rs[i], r, siblings, version, num)
		out[i] = &rs[i]
	}
	return out
}

// replyFromCore fills out with r: version (nil if r.Version is 0) and num
// (nil: allocate one if needed) are where the reply's version and integer
// are stored.
func replyFromCore(out *gen.Reply, r core.Reply, siblings [][]byte, version, num *int64) {
	out.Kind = gen.ReplyKind(r.Kind)
	switch r.Kind {
	case core.KindStatus, core.KindBulk:
		out.Str = r.Str
		if out.Str == nil {
			out.Str = []byte{}
		}
	case core.KindInt:
		if num == nil {
			num = new(int64)
		}
		*num = r.Int
		out.IntVal = num
	case core.KindFloat:
		f := r.Float
		out.Dbl = &f
	case core.KindArray:
		out.Array = make([]*gen.Reply, len(r.Array))
		for i := range r.Array {
			out.Array[i] = ReplyFromCore(r.Array[i], nil)
		}
	case core.KindError:
		out.Error = ReplyErrorFromCore(r.Err)
	}
	if r.Version != 0 {
		*version = int64(r.Version)
		out.Version = version
	}
	if len(siblings) > 0 {
		out.Siblings = siblings
	}
}

// ReplyErrorFromCore converts a typed error for a batch reply.
func ReplyErrorFromCore(e *core.Error) *gen.ReplyError {
	if e == nil {
		e = &core.Error{Code: core.CodeErr, Msg: "error without detail"}
	}
	out := &gen.ReplyError{Code: string(e.Code)}
	if e.Msg != "" {
		m := e.Msg
		out.Message = &m
	}
	if e.Condition != "" {
		c := e.Condition
		out.Condition = &c
	}
	if e.Version != 0 {
		v := int64(e.Version)
		out.Version = &v
	}
	return out
}

// ReplyToCore converts a wire reply. Malformed replies (unknown kind, nesting
// deeper than 32) are an error.
func ReplyToCore(r *gen.Reply) (core.Reply, error) {
	return replyToCore(r, 0)
}

func replyToCore(r *gen.Reply, depth int) (core.Reply, error) {
	if r == nil {
		return core.Reply{}, fmt.Errorf("transport: missing reply")
	}
	if depth > maxReplyDepth {
		return core.Reply{}, fmt.Errorf("transport: reply nested deeper than %d", maxReplyDepth)
	}
	out := core.Reply{Version: uint64(r.GetVersion())}
	switch r.Kind {
	case gen.ReplyKind_NIL:
		out.Kind = core.KindNil
	case gen.ReplyKind_STATUS:
		out.Kind, out.Str = core.KindStatus, r.Str
	case gen.ReplyKind_BULK:
		out.Kind, out.Str = core.KindBulk, r.Str
		if out.Str == nil {
			out.Str = []byte{}
		}
	case gen.ReplyKind_INT:
		out.Kind, out.Int = core.KindInt, r.GetIntVal()
	case gen.ReplyKind_FLOAT:
		out.Kind, out.Float = core.KindFloat, r.GetDbl()
	case gen.ReplyKind_ARRAY:
		out.Kind = core.KindArray
		out.Array = make([]core.Reply, len(r.Array))
		for i, a := range r.Array {
			c, err := replyToCore(a, depth+1)
			if err != nil {
				return core.Reply{}, err
			}
			out.Array[i] = c
		}
	case gen.ReplyKind_ERROR:
		out.Kind = core.KindError
		out.Err = ReplyErrorToCore(r.Error)
	default:
		return core.Reply{}, fmt.Errorf("transport: unknown reply kind %d", r.Kind)
	}
	return out, nil
}

// ReplyErrorToCore converts a wire batch error.
func ReplyErrorToCore(e *gen.ReplyError) *core.Error {
	if e == nil {
		return &core.Error{Code: core.CodeErr, Msg: "error reply without detail"}
	}
	return &core.Error{Code: core.Code(e.Code), Msg: e.GetMessage(), Condition: e.GetCondition(), Version: uint64(e.GetVersion())}
}

// ExceptionFromCore maps a typed core error to the Thrift exception `call`
// and `transaction` raise for it:
//
//	WRONGTYPE              WrongType
//	CONDFAILED             ConditionFailed (condition, current version)
//	TOOLARGE, KEYTOOLARGE  ValueTooLarge
//	CORRUPTION             Corruption
//	IOERR                  Unavailable (the node's storage failed; nothing applied)
//	UNAVAILABLE            Unavailable (a strategy could not serve it; nothing applied)
//	TIMEOUT                Timeout (outcome unknown)
//	anything else          InvalidArgument (code: ERR, UNKNOWN, ...)
func ExceptionFromCore(e *core.Error) error {
	if e == nil {
		return nil
	}
	msg := e.Error()
	switch e.Code {
	case core.CodeWrongType:
		return &gen.WrongType{Message: msg}
	case core.CodeConditionFailed:
		return &gen.ConditionFailed{Message: msg, Condition: e.Condition, CurrentVersion: int64(e.Version)}
	case core.CodeValueTooLarge, core.CodeKeyTooLarge:
		return &gen.ValueTooLarge{Message: msg}
	case core.CodeCorruption:
		return &gen.Corruption{Message: msg}
	case core.CodeIO:
		return &gen.Unavailable{Message: msg, RetryAfterMs: 100}
	case codeUnavailable:
		return &gen.Unavailable{Message: msg, RetryAfterMs: 50}
	case codeTimeout:
		return &gen.Timeout{Message: msg}
	}
	return &gen.InvalidArgument{Message: msg, Code: string(e.Code)}
}
