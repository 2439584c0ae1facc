package core

import (
	"bytes"
	"testing"
)

// DecodeCommand copies the payload once and slices every argument out of
// the copy (codec.go): the arguments must still be independent of the
// input and of each other, and cost one allocation together. Without the
// single copy (one copy per argument) the allocation check fails.
func TestDecodeCommandArgs(t *testing.T) {
	tests := []struct {
		name      string
		cmd       Command
		maxAllocs float64 // Name, Args and the payload copy
	}{
		{"no args", Command{Name: "PING"}, 3},
		{"one empty arg", Command{Name: "GET", Args: [][]byte{{}}}, 3},
		{"SET", Cmd("SET", "key00000042", string(bytes.Repeat([]byte("v"), 100))), 3},
		{"five args", Cmd("SET", "k", "v", "EX", "1", "NX"), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := EncodeCommand(tt.cmd)
			got, err := DecodeCommand(enc)
			if err != nil || got.String() != tt.cmd.String() || len(got.Args) != len(tt.cmd.Args) {
				t.Fatalf("decoded %s (%v), want %s", got, err, tt.cmd)
			}
			for i := range enc { // the decoded command keeps no view of its input
				enc[i] ^= 0xff
			}
			for i := range got.Args { // appending to one argument leaves the next alone
				got.Args[i] = append(got.Args[i], '!')
				if i+1 < len(got.Args) && !bytes.Equal(got.Args[i+1], tt.cmd.Args[i+1]) {
					t.Fatalf("appending to argument %d changed argument %d to %q", i, i+1, got.Args[i+1])
				}
				if !bytes.Equal(got.Args[i][:len(got.Args[i])-1], tt.cmd.Args[i]) {
					t.Fatalf("argument %d is %q after its input was overwritten, want %q", i, got.Args[i], tt.cmd.Args[i])
				}
			}
			enc = EncodeCommand(tt.cmd)
			if n := testing.AllocsPerRun(100, func() { _, _ = DecodeCommand(enc) }); n > tt.maxAllocs {
				t.Errorf("DecodeCommand of %s: %v allocations, want at most %v (go test -run TestDecodeCommandArgs ./core)", tt.cmd, n, tt.maxAllocs)
			}
		})
	}
}
