// Package experiments holds nothing but documentation: each subdirectory is
// one experiment of PAPER.md, a program that writes its results (CSV,
// Markdown table, PNG plots, and the parameters and seeds it used) under
// experiments/results/NAME/. `make experiments` runs them all; `make
// exp-NAME` or `go run ./experiments/NAME` runs one.
package experiments
