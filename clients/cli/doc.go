// Package cli is `dialkv cli`: a redis-cli-like client, one-shot when given a
// command and interactive otherwise, printing replies in redis-cli's style.
package cli
