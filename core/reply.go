package core

// Kind says which field of a Reply holds its value. The kinds follow the
// Redis protocol's reply types so that clients can render them the way
// redis-cli does.
type Kind uint8

// The reply kinds.
const (
	KindNil    Kind = iota // no value: a missing key, "(nil)"
	KindStatus             // a status line such as "OK" in Str
	KindInt                // an integer in Int
	KindFloat              // a floating-point number in Float
	KindBulk               // a binary-safe string in Str
	KindArray              // a list of replies in Array (empty: "(empty array)")
	KindError              // a typed error in Err
)

// Reply is the result of one Command.
type Reply struct {
	Kind  Kind
	Str   []byte
	Int   int64
	Float float64
	Array []Reply
	Err   *Error
	// Version is the version of the key the command wrote (after the write)
	// or read (0 when the key does not exist or the command touches no
	// single key).
	Version uint64
}

// OK is the "OK" status reply.
func OK() Reply { return Reply{Kind: KindStatus, Str: []byte("OK")} }

// Nil is the nil reply.
func Nil() Reply { return Reply{Kind: KindNil} }

// Int returns an integer reply.
func Int(n int64) Reply { return Reply{Kind: KindInt, Int: n} }

// Float returns a floating-point reply.
func Float(f float64) Reply { return Reply{Kind: KindFloat, Float: f} }

// Bulk returns a string reply.
func Bulk(b []byte) Reply { return Reply{Kind: KindBulk, Str: b} }

// Array returns an array reply.
func Array(rs ...Reply) Reply {
	if rs == nil {
		rs = []Reply{}
	}
	return Reply{Kind: KindArray, Array: rs}
}

// ErrorReply wraps a typed error as a reply.
func ErrorReply(e *Error) Reply { return Reply{Kind: KindError, Err: e} }

// IsError reports whether the reply is an error.
func (r Reply) IsError() bool { return r.Kind == KindError }
