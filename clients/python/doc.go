// Package python holds dialkv's Python client (generated from the Thrift
// IDL into dialkv_gen/, wrapped by dialkv_client.py) and the Go tests that
// check it against a real node: Python writes and Go reads, and the other
// way round, over both Thrift protocols. There is no Go API here.
package python
