package client

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apache/thrift/lib/go/thrift"
	"github.com/dialkv/dialkv/core"
	gen "github.com/dialkv/dialkv/transport/thrift/gen-go/dialkv"
)

// Error codes of *Error. Data errors use core's codes.
const (
	CodeWrongType       = string(core.CodeWrongType)
	CodeConditionFailed = string(core.CodeConditionFailed)
	CodeTooLarge        = string(core.CodeValueTooLarge)
	CodeInvalid         = string(core.CodeErr)
	CodeCorruption      = string(core.CodeCorruption)
	CodeUnavailable     = "UNAVAILABLE"
	CodeTimeout         = "TIMEOUT"
	CodeMoved           = "MOVED"
	CodeUnauthenticated = "NOAUTH"
	CodeForbidden       = "FORBIDDEN"
	// CodeConnection: the connection failed; if the request had been sent
	// its outcome is unknown.
	CodeConnection = "CONNECTION"
	// CodeProtocol: the node answered with a Thrift application exception
	// (unknown method, undecodable request, internal error).
	CodeProtocol = "PROTOCOL"
	// CodeNodeDown: every node the call could go to has an open circuit
	// breaker; nothing was sent. Addr names the node and RetryAfter says
	// when it will be tried again. errors.Is(err, ErrConnection) matches
	// it too.
	CodeNodeDown = "NODEDOWN"
)

// Error is the typed error of every client call.
type Error struct {
	Code string
	Msg  string
	// Condition and Version: for CONDFAILED, the failed condition and the
	// key's current version.
	Condition string
	Version   uint64
	// RetryAfter: for UNAVAILABLE, the node's hint.
	RetryAfter time.Duration
	// Addr: for MOVED, the node to ask instead ("" if unknown).
	Addr string
	// Sent reports, for CONNECTION and TIMEOUT, whether the request may
	// have reached the node (its outcome is then unknown).
	Sent bool
	// MaybeApplied reports that an earlier attempt of the same call (the
	// client retried it) may have reached the node: the call's outcome is
	// unknown whatever this error says (e.g. a refused reconnect after a
	// connection that broke with the request sent).
	MaybeApplied bool
	err          error
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Code
	}
	if strings.HasPrefix(e.Msg, e.Code) {
		return e.Msg
	}
	return e.Code + " " + e.Msg
}

// Unwrap returns the underlying error, if any.
func (e *Error) Unwrap() error { return e.err }

// Is matches errors by code: errors.Is(err, client.ErrWrongType).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Code == CodeTooLarge && e.Code == string(core.CodeKeyTooLarge) {
		return true
	}
	if t.Code == CodeInvalid && e.Code == string(core.CodeUnknownCommand) {
		return true
	}
	if t.Code == CodeConnection && e.Code == CodeNodeDown {
		return true
	}
	return t.Code == e.Code && t.Msg == ""
}

// Sentinels for errors.Is.
var (
	ErrWrongType       = &Error{Code: CodeWrongType}
	ErrConditionFailed = &Error{Code: CodeConditionFailed}
	ErrTooLarge        = &Error{Code: CodeTooLarge}
	ErrInvalid         = &Error{Code: CodeInvalid}
	ErrCorruption      = &Error{Code: CodeCorruption}
	ErrUnavailable     = &Error{Code: CodeUnavailable}
	ErrTimeout         = &Error{Code: CodeTimeout}
	ErrMoved           = &Error{Code: CodeMoved}
	ErrUnauthenticated = &Error{Code: CodeUnauthenticated}
	ErrForbidden       = &Error{Code: CodeForbidden}
	ErrConnection      = &Error{Code: CodeConnection}
	ErrProtocol        = &Error{Code: CodeProtocol}
	ErrNodeDown        = &Error{Code: CodeNodeDown}
)

// ReplyErr returns the *Error of an error reply (nil for other replies).
func ReplyErr(r core.Reply) error {
	if r.Kind != core.KindError {
		return nil
	}
	return fromCore(r.Err)
}

func fromCore(e *core.Error) *Error {
	if e == nil {
		return &Error{Code: CodeInvalid, Msg: "error reply without detail"}
	}
	return &Error{Code: string(e.Code), Msg: e.Error(), Condition: e.Condition, Version: e.Version}
}

// fromWire maps an error returned by a generated client call. sent says
// whether the request had been written.
func fromWire(err error, sent bool) *Error {
	var (
		wt  *gen.WrongType
		cf  *gen.ConditionFailed
		tl  *gen.ValueTooLarge
		ia  *gen.InvalidArgument
		ua  *gen.Unavailable
		to  *gen.Timeout
		co  *gen.Corruption
		nl  *gen.NotLeader
		un  *gen.Unauthenticated
		fb  *gen.Forbidden
		ae  thrift.TApplicationException
		own *Error
	)
	switch {
	case errors.As(err, &own):
		return own
	case errors.As(err, &wt):
		return &Error{Code: CodeWrongType, Msg: wt.Message}
	case errors.As(err, &cf):
		return &Error{Code: CodeConditionFailed, Msg: cf.Message, Condition: cf.Condition, Version: uint64(cf.CurrentVersion)}
	case errors.As(err, &tl):
		return &Error{Code: CodeTooLarge, Msg: tl.Message}
	case errors.As(err, &ia):
		code := ia.Code
		if code == "" {
			code = CodeInvalid
		}
		return &Error{Code: code, Msg: ia.Message}
	case errors.As(err, &ua):
		return &Error{Code: CodeUnavailable, Msg: ua.Message, RetryAfter: time.Duration(ua.RetryAfterMs) * time.Millisecond}
	case errors.As(err, &to):
		return &Error{Code: CodeTimeout, Msg: to.Message, Sent: true}
	case errors.As(err, &co):
		return &Error{Code: CodeCorruption, Msg: co.Message}
	case errors.As(err, &nl):
		return &Error{Code: CodeMoved, Msg: nl.Message, Addr: nl.Address}
	case errors.As(err, &un):
		return &Error{Code: CodeUnauthenticated, Msg: un.Message}
	case errors.As(err, &fb):
		return &Error{Code: CodeForbidden, Msg: fb.Message}
	case errors.As(err, &ae):
		msg := ae.Error()
		if strings.HasPrefix(msg, "UNAVAILABLE ") {
			// The node refused the connection (connection limit).
			return &Error{Code: CodeUnavailable, Msg: msg, RetryAfter: 100 * time.Millisecond, err: err}
		}
		return &Error{Code: CodeProtocol, Msg: msg, err: err}
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Code: CodeTimeout, Msg: fmt.Sprintf("deadline exceeded: %v", err), Sent: sent, err: err}
	}
	return &Error{Code: CodeConnection, Msg: err.Error(), Sent: sent, err: err}
}

// dialError maps a failure to connect: a refused login (NOAUTH, or
// UNAVAILABLE when the node is throttling) keeps its type; anything else
// is a connection error that never reached the node.
func dialError(err error) *Error {
	var (
		un *gen.Unauthenticated
		ua *gen.Unavailable
		ia *gen.InvalidArgument
	)
	if errors.As(err, &un) || errors.As(err, &ua) || errors.As(err, &ia) {
		e := fromWire(err, false)
		e.Msg = err.Error()
		return e
	}
	return &Error{Code: CodeConnection, Msg: err.Error(), err: err}
}
