package cli

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/dialkv/dialkv/core"
)

// Format renders a reply the way redis-cli does on a terminal (its
// cliFormatReplyTTY): OK, "value", (integer) 3, (double) 1.5, (nil),
// (empty array), numbered nested lists and (error) lines. The result ends
// with a newline.
func Format(r core.Reply) string {
	var b strings.Builder
	formatTTY(&b, r, "")
	return b.String()
}

func formatTTY(b *strings.Builder, r core.Reply, prefix string) {
	switch r.Kind {
	case core.KindNil:
		b.WriteString("(nil)\n")
	case core.KindStatus:
		b.Write(r.Str)
		b.WriteByte('\n')
	case core.KindInt:
		b.WriteString("(integer) ")
		b.WriteString(strconv.FormatInt(r.Int, 10))
		b.WriteByte('\n')
	case core.KindFloat:
		b.WriteString("(double) ")
		b.WriteString(FormatFloat(r.Float))
		b.WriteByte('\n')
	case core.KindBulk:
		b.WriteString(Quote(r.Str))
		b.WriteByte('\n')
	case core.KindError:
		b.WriteString("(error) ")
		b.WriteString(errorText(r.Err))
		b.WriteByte('\n')
	case core.KindArray:
		if len(r.Array) == 0 {
			b.WriteString("(empty array)\n")
			return
		}
		idxlen := len(strconv.Itoa(len(r.Array)))
		// Nested lists are indented by the width of "N) " of this level.
		nested := prefix + strings.Repeat(" ", idxlen+2)
		for i, e := range r.Array {
			if i > 0 {
				// The first element follows whatever the caller printed.
				b.WriteString(prefix)
			}
			idx := strconv.Itoa(i + 1)
			b.WriteString(strings.Repeat(" ", idxlen-len(idx)))
			b.WriteString(idx)
			b.WriteString(") ")
			formatTTY(b, e, nested)
		}
	default:
		b.WriteString("(unknown reply kind ")
		b.WriteString(strconv.Itoa(int(r.Kind)))
		b.WriteString(")\n")
	}
}

// FormatRaw renders a reply like `redis-cli --raw`: strings and status
// lines as they are, integers and doubles as numbers, nil as an empty line,
// errors as "(error) message", and the elements of arrays (nested ones
// flattened) one per line. The result ends with a newline.
func FormatRaw(r core.Reply) string {
	var b strings.Builder
	formatRaw(&b, r)
	return b.String()
}

func formatRaw(b *strings.Builder, r core.Reply) {
	switch r.Kind {
	case core.KindNil:
		b.WriteByte('\n')
	case core.KindStatus, core.KindBulk:
		b.Write(r.Str)
		b.WriteByte('\n')
	case core.KindInt:
		b.WriteString(strconv.FormatInt(r.Int, 10))
		b.WriteByte('\n')
	case core.KindFloat:
		b.WriteString(FormatFloat(r.Float))
		b.WriteByte('\n')
	case core.KindError:
		b.WriteString("(error) ")
		b.WriteString(errorText(r.Err))
		b.WriteByte('\n')
	case core.KindArray:
		for _, e := range r.Array {
			formatRaw(b, e)
		}
	default:
		b.WriteByte('\n')
	}
}

// FormatErr renders an error returned by the client (rather than carried
// in a reply) as redis-cli renders an error reply: "(error) CODE message".
func FormatErr(err error) string {
	var e *core.Error
	if errors.As(err, &e) {
		return "(error) " + errorText(e) + "\n"
	}
	return "(error) ERR " + err.Error() + "\n"
}

func errorText(e *core.Error) string {
	if e == nil {
		return "ERR (no error detail)"
	}
	return e.Error()
}

// FormatFloat renders a double like Redis 7: the shortest representation
// that reads back exactly ("1.5", "3", "1e+20"), and inf, -inf, nan.
func FormatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Quote renders a string like redis-cli (its sdscatrepr): in double quotes,
// with \\ \" \n \r \t \a \b escaped and every other byte outside printable
// ASCII as \xHH.
func Quote(s []byte) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, c := range s {
		switch c {
		case '\\', '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		default:
			if c >= 0x20 && c < 0x7f {
				b.WriteByte(c)
			} else {
				const hex = "0123456789abcdef"
				b.WriteString(`\x`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
