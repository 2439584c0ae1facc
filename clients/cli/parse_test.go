package cli

import (
	"errors"
	"reflect"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"", nil},
		{"   \t ", nil},
		{"SET k v", []string{"SET", "k", "v"}},
		{"  get   k  ", []string{"get", "k"}},
		{`SET k "hello world"`, []string{"SET", "k", "hello world"}},
		{`SET k ""`, []string{"SET", "k", ""}},
		{`SET k ''`, []string{"SET", "k", ""}},
		{`SET k "a\"b\\c"`, []string{"SET", "k", `a"b\c`}},
		{`SET k "\n\r\t\b\a"`, []string{"SET", "k", "\n\r\t\b\a"}},
		{`SET k "\x00\xff\x41"`, []string{"SET", "k", "\x00\xffA"}},
		{`SET k "\xZZ"`, []string{"SET", "k", "xZZ"}}, // not hex: \x stands for x
		{`SET k "\q"`, []string{"SET", "k", "q"}},
		{`SET k 'it\'s'`, []string{"SET", "k", "it's"}},
		{`SET k 'a\nb'`, []string{"SET", "k", `a\nb`}}, // single quotes: only \' is an escape
		{`SET k foo"bar baz"`, []string{"SET", "k", "foobar baz"}},
		{`SET k "multi word" 'and more'`, []string{"SET", "k", "multi word", "and more"}},
		{"a\tb\nc", []string{"a", "b", "c"}},
		{`"x"`, []string{"x"}},
	} {
		got, err := SplitArgs(tc.line)
		if err != nil {
			t.Errorf("SplitArgs(%q): %v", tc.line, err)
			continue
		}
		var gs []string
		for _, a := range got {
			gs = append(gs, string(a))
		}
		if !reflect.DeepEqual(gs, tc.want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", tc.line, gs, tc.want)
		}
	}
}

func TestSplitArgsInvalid(t *testing.T) {
	for _, line := range []string{
		`SET k "unterminated`,
		`SET k 'unterminated`,
		`SET k "closed"x`,
		`SET k 'closed'x`,
		`"`,
		`SET k "ends with backslash\`,
	} {
		if got, err := SplitArgs(line); !errors.Is(err, ErrInvalidArgs) {
			t.Errorf("SplitArgs(%q) = %q, %v; want ErrInvalidArgs", line, got, err)
		}
	}
}

// Quote and SplitArgs are inverses: what the CLI prints can be typed back.
func TestQuoteRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "with space", `q"uote`, `back\slash`, "\x00\x01\x7f\xff", "tab\tnew\nline\r\a\b", "héllo"} {
		got, err := SplitArgs(Quote([]byte(s)))
		if err != nil || len(got) != 1 || string(got[0]) != s {
			t.Errorf("SplitArgs(Quote(%q)) = %q, %v", s, got, err)
		}
	}
}
