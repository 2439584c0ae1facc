package cli

import (
	"errors"
	"fmt"
)

// ErrInvalidArgs is returned by SplitArgs for a line with unbalanced quotes
// or a closing quote not followed by a space; redis-cli prints the same
// message.
var ErrInvalidArgs = errors.New("Invalid argument(s)") //nolint:staticcheck // redis-cli's wording

// SplitArgs splits a command line into arguments with redis-cli's rules
// (its sdssplitargs):
//
//   - arguments are separated by spaces, tabs and newlines;
//   - "double quotes" take the escapes \n \r \t \b \a \\ \" and \xHH (a byte
//     in hex); any other escaped character stands for itself;
//   - 'single quotes' take only the escape \';
//   - a quote may start in the middle of an argument (foo"bar baz" is one
//     argument, foobar baz), but a closing quote must be followed by a space
//     or the end of the line.
//
// Arguments are byte strings: \xHH can produce any byte.
func SplitArgs(line string) ([][]byte, error) {
	var args [][]byte
	p := 0
	n := len(line)
	for {
		for p < n && isSpace(line[p]) {
			p++
		}
		if p == n {
			return args, nil
		}
		var cur []byte
		inDQ, inSQ := false, false
		done := false
		for !done {
			switch {
			case inDQ:
				if p == n {
					return nil, fmt.Errorf("%w: unterminated double quote", ErrInvalidArgs)
				}
				c := line[p]
				switch {
				case c == '\\' && p+3 < n && line[p+1] == 'x' && isHex(line[p+2]) && isHex(line[p+3]):
					cur = append(cur, hexVal(line[p+2])<<4|hexVal(line[p+3]))
					p += 3
				case c == '\\' && p+1 < n:
					p++
					switch e := line[p]; e {
					case 'n':
						cur = append(cur, '\n')
					case 'r':
						cur = append(cur, '\r')
					case 't':
						cur = append(cur, '\t')
					case 'b':
						cur = append(cur, '\b')
					case 'a':
						cur = append(cur, '\a')
					default:
						cur = append(cur, e)
					}
				case c == '"':
					if p+1 < n && !isSpace(line[p+1]) {
						return nil, fmt.Errorf("%w: closing quote must be followed by a space", ErrInvalidArgs)
					}
					done = true
				default:
					cur = append(cur, c)
				}
			case inSQ:
				if p == n {
					return nil, fmt.Errorf("%w: unterminated single quote", ErrInvalidArgs)
				}
				c := line[p]
				switch {
				case c == '\\' && p+1 < n && line[p+1] == '\'':
					p++
					cur = append(cur, '\'')
				case c == '\'':
					if p+1 < n && !isSpace(line[p+1]) {
						return nil, fmt.Errorf("%w: closing quote must be followed by a space", ErrInvalidArgs)
					}
					done = true
				default:
					cur = append(cur, c)
				}
			default:
				if p == n {
					done = true
					continue
				}
				switch c := line[p]; {
				case isSpace(c):
					done = true
				case c == '"':
					inDQ = true
				case c == '\'':
					inSQ = true
				default:
					cur = append(cur, c)
				}
			}
			if p < n {
				p++
			}
		}
		if cur == nil {
			cur = []byte{}
		}
		args = append(args, cur)
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == 0 }

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func hexVal(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
