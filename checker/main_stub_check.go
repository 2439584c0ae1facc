package checker

import (
	"fmt"
	"io"
)

// Main runs `dialkv check`. STUB: replaced by the real command.
func Main(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "dialkv check: not built yet")
	return 3
}
