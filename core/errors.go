package core

import (
	"errors"
	"fmt"
)

// Code classifies an Error. Codes are stable strings: they cross the wire
// (transport maps each one to a typed Thrift exception) and clients match on
// them.
type Code string

// The error codes. The first word of Error() is the code, as in Redis
// ("WRONGTYPE Operation against a key holding the wrong kind of value").
const (
	CodeErr             Code = "ERR"        // generic invalid argument or syntax error
	CodeUnknownCommand  Code = "UNKNOWN"    // no such command
	CodeWrongType       Code = "WRONGTYPE"  // operation against a key holding another type
	CodeConditionFailed Code = "CONDFAILED" // a CAS or transaction condition did not hold
	CodeKeyTooLarge     Code = "KEYTOOLARGE"
	CodeValueTooLarge   Code = "TOOLARGE"
	CodeCorruption      Code = "CORRUPTION" // a stored record failed its checksum
	CodeIO              Code = "IOERR"      // the engine failed to read or write
)

// Error is dialkv's typed error. Condition and Version are set for
// CodeConditionFailed: which condition failed and the key's current version.
type Error struct {
	Code      Code
	Msg       string
	Condition string
	Version   uint64
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return string(e.Code)
	}
	return string(e.Code) + " " + e.Msg
}

// Errorf makes an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ErrNotFound is returned by Engine reads of a missing key.
var ErrNotFound = errors.New("core: key not found")

// ErrCorruption is wrapped by engine errors for records that fail their
// checksum; errors.Is(err, ErrCorruption) detects them.
var ErrCorruption = errors.New("core: corrupted record")

// AsError returns err as an *Error: typed errors pass through, corruption
// becomes CodeCorruption and anything else CodeIO.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, ErrCorruption) {
		return &Error{Code: CodeCorruption, Msg: err.Error()}
	}
	return &Error{Code: CodeIO, Msg: err.Error()}
}
