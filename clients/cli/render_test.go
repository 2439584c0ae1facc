package cli

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"

	"github.com/dialkv/dialkv/core"
)

func bulk(s string) core.Reply { return core.Bulk([]byte(s)) }

func TestFormat(t *testing.T) {
	ten := make([]core.Reply, 10)
	for i := range ten {
		ten[i] = bulk(strconv.Itoa(i))
	}
	for _, tc := range []struct {
		name string
		r    core.Reply
		want string
	}{
		{"status", core.OK(), "OK\n"},
		{"bulk", bulk("value"), "\"value\"\n"},
		{"empty bulk", bulk(""), "\"\"\n"},
		{"bulk escapes", bulk("a\"b\\c\n\x00é"), "\"a\\\"b\\\\c\\n\\x00\\xc3\\xa9\"\n"},
		{"integer", core.Int(3), "(integer) 3\n"},
		{"negative integer", core.Int(-42), "(integer) -42\n"},
		{"double", core.Float(1.5), "(double) 1.5\n"},
		{"whole double", core.Float(3), "(double) 3\n"},
		{"inf", core.Float(math.Inf(1)), "(double) inf\n"},
		{"nil", core.Nil(), "(nil)\n"},
		{"empty array", core.Array(), "(empty array)\n"},
		{"error", core.ErrorReply(&core.Error{Code: core.CodeWrongType, Msg: "Operation against a key holding the wrong kind of value"}),
			"(error) WRONGTYPE Operation against a key holding the wrong kind of value\n"},
		{"array", core.Array(bulk("a"), core.Int(2), core.Nil()), "1) \"a\"\n2) (integer) 2\n3) (nil)\n"},
		// redis-cli pads indexes to the width of the largest one.
		{"ten", core.Array(ten...), " 1) \"0\"\n 2) \"1\"\n 3) \"2\"\n 4) \"3\"\n 5) \"4\"\n 6) \"5\"\n 7) \"6\"\n 8) \"7\"\n 9) \"8\"\n10) \"9\"\n"},
		// Nested lists: the first element follows its parent's index, the
		// others are indented by the parent's "N) " width (as redis-cli).
		{"nested", core.Array(core.Array(bulk("a"), bulk("b")), bulk("c"), core.Array()),
			"1) 1) \"a\"\n   2) \"b\"\n2) \"c\"\n3) (empty array)\n"},
		{"deeply nested", core.Array(core.Array(bulk("x"), core.Array(core.Int(1), core.Int(2)))),
			"1) 1) \"x\"\n   2) 1) (integer) 1\n      2) (integer) 2\n"},
		{"nested under wide index", core.Array(append(ten[:9:9], core.Array(bulk("p"), bulk("q")))...),
			" 1) \"0\"\n 2) \"1\"\n 3) \"2\"\n 4) \"3\"\n 5) \"4\"\n 6) \"5\"\n 7) \"6\"\n 8) \"7\"\n 9) \"8\"\n10) 1) \"p\"\n    2) \"q\"\n"},
	} {
		if got := Format(tc.r); got != tc.want {
			t.Errorf("%s: Format = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFormatRaw(t *testing.T) {
	for _, tc := range []struct {
		r    core.Reply
		want string
	}{
		{core.OK(), "OK\n"},
		{bulk("a b"), "a b\n"},
		{core.Int(7), "7\n"},
		{core.Float(0.25), "0.25\n"},
		{core.Nil(), "\n"},
		{core.Array(bulk("a"), core.Array(bulk("b"), core.Int(1))), "a\nb\n1\n"},
		{core.ErrorReply(core.Errorf(core.CodeErr, "syntax error")), "(error) ERR syntax error\n"},
	} {
		if got := FormatRaw(tc.r); got != tc.want {
			t.Errorf("FormatRaw(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestFormatErr(t *testing.T) {
	typed := fmt.Errorf("call: %w", &core.Error{Code: core.CodeConditionFailed, Msg: "version mismatch", Version: 4})
	if got, want := FormatErr(typed), "(error) CONDFAILED version mismatch\n"; got != want {
		t.Errorf("FormatErr(typed) = %q, want %q", got, want)
	}
	if got, want := FormatErr(errors.New("boom")), "(error) ERR boom\n"; got != want {
		t.Errorf("FormatErr(plain) = %q, want %q", got, want)
	}
}
