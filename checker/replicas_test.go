package checker

import (
	"bytes"
	"reflect"
	"testing"
)

func TestEncodeReplicasRoundTrip(t *testing.T) {
	in := []ReplicaState{
		{Node: "n1", Data: map[string]string{"a": "1", "b": "2"}},
		{Node: "n2", Data: map[string]string{}, Holds: []string{"a"}},
	}
	b, err := EncodeReplicas(in)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n != len(in) {
		t.Fatalf("%d lines, want %d:\n%s", n, len(in), b)
	}
	out, err := ReadReplicas(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestOutcomes(t *testing.T) {
	ops := []Op{{Outcome: OK}, {Outcome: Fail}, {Outcome: Unknown}, {Outcome: OK}}
	if ok, failed, unknown := Outcomes(ops); ok != 2 || failed != 1 || unknown != 1 {
		t.Fatalf("Outcomes = %d, %d, %d; want 2, 1, 1", ok, failed, unknown)
	}
}
