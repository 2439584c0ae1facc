package cli

import (
	"fmt"
	"io"
)

// Main runs `dialkv cli`. STUB: replaced by the real command.
func Main(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "dialkv cli: not built yet")
	return 3
}
