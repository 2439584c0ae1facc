package checker

import (
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendOpJSON appends op as one history line (JSON and a newline) to b.
// The bytes are exactly those encoding/json's Encoder writes for op (field
// order and omitempty rules of Op's tags, HTML-safe string escaping,
// invalid UTF-8 as U+FFFD, map keys sorted), without reflection:
// TestAppendOpJSONMatchesEncodingJSON holds it to that. WriteHistory uses it,
// so histories, and their hashes, are unchanged by it.
func AppendOpJSON(b []byte, op *Op) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, op.ID, 10)
	b = append(b, `,"client":`...)
	b = strconv.AppendInt(b, int64(op.Client), 10)
	if op.Session != "" {
		b = append(b, `,"session":`...)
		b = appendJSONString(b, op.Session)
	}
	b = append(b, `,"f":`...)
	b = appendJSONString(b, op.F)
	if op.Key != "" {
		b = append(b, `,"key":`...)
		b = appendJSONString(b, op.Key)
	}
	if len(op.Args) > 0 {
		b = append(b, `,"args":`...)
		b = appendJSONStrings(b, op.Args)
	}
	b = append(b, `,"invoke":`...)
	b = strconv.AppendInt(b, op.Invoke, 10)
	if op.Complete != nil {
		b = append(b, `,"complete":`...)
		b = strconv.AppendInt(b, *op.Complete, 10)
	}
	b = append(b, `,"outcome":`...)
	b = appendJSONString(b, string(op.Outcome))
	if op.Value != nil {
		b = append(b, `,"value":`...)
		b = appendJSONString(b, *op.Value)
	}
	if len(op.Values) > 0 {
		b = append(b, `,"values":`...)
		b = appendJSONStrings(b, op.Values)
	}
	if op.Int != nil {
		b = append(b, `,"int":`...)
		b = strconv.AppendInt(b, *op.Int, 10)
	}
	if op.Version != 0 {
		b = append(b, `,"version":`...)
		b = strconv.AppendUint(b, op.Version, 10)
	}
	if op.Error != "" {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, op.Error)
	}
	if op.Node != "" {
		b = append(b, `,"node":`...)
		b = appendJSONString(b, op.Node)
	}
	if len(op.Options) > 0 {
		b = append(b, `,"options":{`...)
		keys := make([]string, 0, len(op.Options))
		for k := range op.Options {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, op.Options[k])
		}
		b = append(b, '}')
	}
	if op.TokenIn != "" {
		b = append(b, `,"token_in":`...)
		b = appendJSONString(b, op.TokenIn)
	}
	if op.TokenOut != "" {
		b = append(b, `,"token_out":`...)
		b = appendJSONString(b, op.TokenOut)
	}
	return append(b, '}', '\n')
}

func appendJSONStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// jsonSafe reports whether encoding/json writes the ASCII byte c as it is
// with HTML escaping on: printable ones except '"', '\\', '<', '>' and '&'.
func jsonSafe(c byte) bool {
	return c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
}

// appendJSONString appends s quoted as encoding/json does with HTML
// escaping (its Encoder's default).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe(c) {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
