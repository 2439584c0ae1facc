// Package transport carries dialkv's client API over Thrift: conversions
// between the core types and the generated Thrift types (package
// transport/thrift/gen-go/dialkv, generated from transport/thrift/dialkv.thrift
// by `make gen`), the node-side connection server (framed transport, binary
// or compact protocol, connection limit, idle timeout, maximum frame size),
// and the client-side connection used by package clients/client.
//
// The server never trusts a byte it reads: frames are length-checked before
// anything is allocated, a request that fails to decode gets a Thrift
// application exception, and a connection whose framing is broken is closed
// without disturbing the others.
package transport
