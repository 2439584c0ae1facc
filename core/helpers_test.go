package core

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// t0 is the fixed start time of tests.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := NewStore(NewMemEngine(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// render prints a reply the way redis-cli does, compactly, for test tables.
func render(r Reply) string {
	switch r.Kind {
	case KindNil:
		return "(nil)"
	case KindStatus:
		return string(r.Str)
	case KindInt:
		return "(integer) " + strconv.FormatInt(r.Int, 10)
	case KindFloat:
		return "(double) " + formatFloat(r.Float)
	case KindBulk:
		return strconv.Quote(string(r.Str))
	case KindArray:
		parts := make([]string, len(r.Array))
		for i, e := range r.Array {
			parts[i] = render(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case KindError:
		return "(error) " + r.Err.Error()
	}
	return fmt.Sprintf("(kind %d)", r.Kind)
}

// splitArgs splits a test command line on spaces; ” is an empty argument.
func splitArgs(line string) Command {
	f := strings.Fields(line)
	for i := range f {
		if f[i] == "''" {
			f[i] = ""
		}
	}
	return Cmd(f[0], f[1:]...)
}

// step is one line of a scripted test: a command at an offset from t0 and
// the expected rendering of its reply ("" to skip the check; a prefix
// ending in "*" matches by prefix).
type step struct {
	at   time.Duration
	cmd  string
	want string
}

func runScript(t *testing.T, s *Store, steps []step) {
	t.Helper()
	for i, st := range steps {
		got := render(s.Apply(t0.Add(st.at), splitArgs(st.cmd)))
		if st.want == "" {
			continue
		}
		if strings.HasSuffix(st.want, "*") {
			if !strings.HasPrefix(got, strings.TrimSuffix(st.want, "*")) {
				t.Fatalf("step %d: %s\n got  %s\n want %s", i, st.cmd, got, st.want)
			}
			continue
		}
		if got != st.want {
			t.Fatalf("step %d: %s\n got  %s\n want %s", i, st.cmd, got, st.want)
		}
	}
}
