package checker

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestAppendOpJSONMatchesEncodingJSON holds the hand-written encoder to
// encoding/json's bytes: hand-picked operations with every field and
// awkward strings, then random ones.
func TestAppendOpJSONMatchesEncodingJSON(t *testing.T) {
	awkward := []string{"", "plain", `q"uote`, `back\slash`, "<a href='x'>&amp;</a>", "\b\f\n\r\t\x00\x01\x1f\x7f",
		"é ü 日本 🙂", "\u2028\u2029", "bad \xff\xfe utf8 \xc3", "\xed\xa0\x80 surrogate", "v3.17", "TIMEOUT no reply within 500ms"}
	cases := []Op{
		{},
		{ID: 1, Client: 2, F: FGet, Key: "r1", Invoke: 5, Outcome: Unknown},
		{ID: -7, Client: -1, Session: "s0", F: FCAS, Key: "r0", Args: []string{"v0.1", "v1.2"}, Invoke: 1 << 62,
			Complete: Int64Ptr(-3), Outcome: OK, Value: StrPtr(""), Values: []string{"a", "b"}, Int: Int64Ptr(0),
			Version: 1<<64 - 1, Error: "CONDFAILED x", Node: "n3", Options: map[string]string{"z": "1", "a": "<2>", "m": ""},
			TokenIn: "00ff", TokenOut: "ab"},
		{F: FSMembers, Args: []string{}, Values: []string{}, Options: map[string]string{}},
	}
	for _, s := range awkward {
		cases = append(cases, Op{Session: s, F: s, Key: s, Args: []string{s, s}, Outcome: Outcome(s), Value: StrPtr(s),
			Values: []string{s}, Error: s, Node: s, Options: map[string]string{s: s}, TokenIn: s, TokenOut: s})
	}
	rnd := rand.New(rand.NewPCG(4, 2))
	str := func() string {
		if rnd.IntN(3) == 0 {
			return ""
		}
		if rnd.IntN(4) == 0 {
			return awkward[rnd.IntN(len(awkward))]
		}
		b := make([]byte, rnd.IntN(12))
		for i := range b {
			b[i] = byte(rnd.IntN(256))
		}
		return string(b)
	}
	for range 2000 {
		op := Op{ID: rnd.Int64() - rnd.Int64(), Client: rnd.IntN(100), Session: str(), F: str(), Key: str(),
			Invoke: rnd.Int64(), Outcome: Outcome(str()), Version: uint64(rnd.IntN(3)) * rnd.Uint64(), Error: str(),
			Node: str(), TokenIn: str(), TokenOut: str()}
		if rnd.IntN(2) == 0 {
			op.Args = []string{str(), str()}[:rnd.IntN(3)]
		}
		if rnd.IntN(2) == 0 {
			op.Complete = Int64Ptr(rnd.Int64())
		}
		if rnd.IntN(2) == 0 {
			op.Value = StrPtr(str())
		}
		if rnd.IntN(2) == 0 {
			op.Values = []string{str(), str(), str()}[:rnd.IntN(4)]
		}
		if rnd.IntN(2) == 0 {
			op.Int = Int64Ptr(rnd.Int64() - rnd.Int64())
		}
		if rnd.IntN(4) == 0 {
			op.Options = map[string]string{str(): str(), str(): str()}
		}
		cases = append(cases, op)
	}
	for i := range cases {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(&cases[i]); err != nil {
			t.Fatal(err)
		}
		if got := AppendOpJSON(nil, &cases[i]); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("case %d:\n got  %s\n want %s", i, got, want.Bytes())
		}
	}
}

// BenchmarkWriteHistory: a simulator-like history of 5,000 operations.
func BenchmarkWriteHistory(b *testing.B) {
	ops := make([]Op, 5000)
	for i := range ops {
		ops[i] = Op{ID: int64(i), Client: i % 10, Session: "s3", F: FPut, Key: "r4", Args: []string{"v3.1234"},
			Invoke: int64(i) * 1e6, Complete: Int64Ptr(int64(i)*1e6 + 2e6), Outcome: OK, Version: 17, Node: "n1"}
	}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := WriteHistory(&buf, ops); err != nil {
			b.Fatal(err)
		}
	}
}
