package netcut

import (
	"reflect"
	"strings"
	"testing"
)

func TestRules(t *testing.T) {
	a, b, c := Host{UID: 1, IP: "127.0.31.1"}, Host{UID: 2, IP: "127.0.31.2"}, Host{UID: 3, IP: "127.0.31.3"}
	for _, tc := range []struct {
		name   string
		groups [][]Host
		want   []string
	}{
		{"one group: nothing cut", [][]Host{{a, b, c}}, nil},
		{"1|2", [][]Host{{a}, {b, c}}, []string{
			"1>127.0.31.2", "1>127.0.31.3", "2>127.0.31.1", "3>127.0.31.1"}},
		{"three singletons", [][]Host{{a}, {b}, {c}}, []string{
			"1>127.0.31.2", "1>127.0.31.3", "2>127.0.31.1", "2>127.0.31.3", "3>127.0.31.1", "3>127.0.31.2"}},
	} {
		var got []string
		for _, r := range Rules(tc.groups) {
			if len(r) != 8 || r[0] != "-m" || r[1] != "owner" || r[2] != "--uid-owner" || r[4] != "-d" || r[7] != "DROP" {
				t.Fatalf("%s: malformed rule %q", tc.name, strings.Join(r, " "))
			}
			got = append(got, r[3]+">"+r[5])
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
