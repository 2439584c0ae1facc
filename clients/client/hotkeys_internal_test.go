package client

import "testing"

func TestParseHotLine(t *testing.T) {
	tests := []struct {
		line       string
		ns, key    string
		guaranteed float64
		bad        bool
	}{
		{line: `q "hot" ~25 (+-0)`, ns: "q", key: "hot", guaranteed: 25},
		{line: `default "a b\x00\"c" ~10 (+-3)`, ns: "default", key: "a b\x00\"c", guaranteed: 7},
		{line: `q "k" ~2 (+-2)`, ns: "q", key: "k", guaranteed: 0},
		{line: `q`, bad: true},
		{line: `q hot ~1 (+-0)`, bad: true},
		{line: `q "hot" 25`, bad: true},
		{line: `q "hot`, bad: true},
	}
	for _, tc := range tests {
		ns, key, g, err := parseHotLine(tc.line)
		if tc.bad {
			if err == nil {
				t.Errorf("parseHotLine(%q) = %q %q %v, want an error", tc.line, ns, key, g)
			}
			continue
		}
		if err != nil || ns != tc.ns || key != tc.key || g != tc.guaranteed {
			t.Errorf("parseHotLine(%q) = %q %q %v, %v; want %q %q %v", tc.line, ns, key, g, err, tc.ns, tc.key, tc.guaranteed)
		}
	}
}

func TestHotPickRoundRobin(t *testing.T) {
	h := &hotSet{}
	addrs := []string{"a", "b", "c"}
	var got []string
	for range 6 {
		got = append(got, h.pick(addrs))
	}
	want := []string{"a", "b", "c", "a", "b", "c"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("picks = %v, want %v", got, want)
		}
	}
}
