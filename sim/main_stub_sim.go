package sim

import (
	"fmt"
	"io"
)

// Main runs `dialkv sim`. STUB: replaced by the real command.
func Main(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "dialkv sim: not built yet")
	return 3
}
