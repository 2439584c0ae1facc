package cli

import (
	"testing"

	"github.com/dialkv/dialkv/core"
)

// The help table covers every command the core data model implements, and
// documents no server command that core does not know.
func TestHelpCoversCore(t *testing.T) {
	for _, name := range core.CommandNames() {
		if _, ok := lookupDoc(name); !ok {
			t.Errorf("core command %s has no help entry in commandDocs", name)
		}
	}
	for _, d := range commandDocs() {
		if !clientSide(d.Group) && !core.KnownCommand(d.Name) {
			t.Errorf("help documents %s, which core does not implement", d.Name)
		}
	}
}
