package nodes

import (
	"fmt"
	"io"
)

// DemoMain runs `dialkv demo`. STUB: replaced by the real command.
func DemoMain(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "dialkv demo: not built yet")
	return 3
}
