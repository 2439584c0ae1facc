// Package layout holds no code: its test enforces the import rules of the
// project layout (DESIGN.md, "Layout"): which of dialkv's top-level folders
// may import which.
package layout
