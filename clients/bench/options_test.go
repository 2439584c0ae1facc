package bench

import "testing"

func TestParseQuorumSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int
		err  bool
	}{
		{"", 0, false}, {"one", 1, false}, {"QUORUM", -2, false}, {"all", -1, false},
		{"2", 2, false}, {"-1", 0, true}, {"most", 0, true},
	} {
		got, err := ParseQuorumSize(tt.in)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("ParseQuorumSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestRequestOptions(t *testing.T) {
	o := Config{Namespace: "q", R: 2, W: -1, Strict: true, ReadMode: "stale", Mode: "linearizable"}.requestOptions()
	if o.GetNs() != "q" || o.GetR() != 2 || o.GetW() != -1 || !o.GetStrict() || o.GetReadMode() != "stale" || o.GetMode() != "linearizable" {
		t.Fatalf("requestOptions = %+v", o)
	}
	if o := (Config{}).requestOptions(); o.Ns != nil || o.R != nil || o.W != nil || o.Strict != nil || o.ReadMode != nil || o.Mode != nil {
		t.Fatalf("defaults set options: %+v", o)
	}
}
