package main

import (
	"bytes"
	"strings"
	"testing"
)

// Every subcommand answers --help with exit 0 and a usage text; unknown
// commands are usage errors (exit 3).
func TestEverySubcommandHasHelp(t *testing.T) {
	for _, sc := range subcommands() {
		t.Run(sc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run([]string{sc.name, "--help"}, &out, &errb)
			text := out.String() + errb.String()
			if code != 0 {
				t.Fatalf("dialkv %s --help: exit %d, output %q", sc.name, code, text)
			}
			if !strings.Contains(strings.ToLower(text), "usage") {
				t.Fatalf("dialkv %s --help prints no usage: %q", sc.name, text)
			}
		})
	}
	var out, errb bytes.Buffer
	if code := run([]string{"no-such-command"}, &out, &errb); code != 3 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("unknown command: exit %d, stderr %q", code, errb.String())
	}
	if code := run(nil, &out, &errb); code != 3 {
		t.Fatalf("no command: exit %d, want 3", code)
	}
}
