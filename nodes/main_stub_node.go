package nodes

import (
	"fmt"
	"io"
)

// Main runs `dialkv node`. STUB: replaced by the real command.
func Main(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "dialkv node: not built yet")
	return 3
}
