package bench

import (
	"fmt"
	"io"
)

// Main runs `dialkv bench`. STUB: replaced by the real command.
func Main(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "dialkv bench: not built yet")
	return 3
}
