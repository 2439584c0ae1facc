// Package bench is `dialkv bench`: a YCSB-like load generator with
// closed-loop and open-loop (no coordinated omission) modes and HDR
// latency histograms.
package bench
