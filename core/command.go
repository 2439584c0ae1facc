package core

import (
	"strconv"
	"strings"
)

// Command is one Redis-style command: an upper-case name and its arguments,
// for example {Name: "SET", Args: ["k", "v", "EX", "10"]}.
//
// Commands are the unit every replication strategy ships between replicas,
// so they are plain data: use EncodeCommand/DecodeCommand to serialise them.
type Command struct {
	Name string
	Args [][]byte
}

// Cmd builds a Command from strings; the name is upper-cased.
func Cmd(name string, args ...string) Command {
	c := Command{Name: strings.ToUpper(name), Args: make([][]byte, len(args))}
	for i, a := range args {
		c.Args[i] = []byte(a)
	}
	return c
}

// String renders the command for logs and traces.
func (c Command) String() string {
	var b strings.Builder
	b.WriteString(c.Name)
	for _, a := range c.Args {
		b.WriteByte(' ')
		b.WriteString(quoteArg(a))
	}
	return b.String()
}

func quoteArg(a []byte) string {
	for _, ch := range a {
		if ch <= ' ' || ch >= 0x7f || ch == '"' || ch == '\\' {
			return strconv.Quote(string(a))
		}
	}
	if len(a) == 0 {
		return `""`
	}
	return string(a)
}
