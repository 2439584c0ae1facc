package core

import (
	"encoding/binary"
	"hash/crc32"
)

// Sealed values. Records, the version counter, index definitions and the
// replicas' metadata are stored sealed: their bytes followed by a 4-byte
// little-endian CRC32C (Castagnoli) of the key they are stored under (the
// user key for records, the engine key for the rest) followed by those
// bytes. Covering the key catches a value that ended up under another key
// as well as a flipped bit.

// castagnoli is the CRC32C table of every seal.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keyCRC is the checksum of key alone: the start of the seal of any value
// stored under it (callers that seal under one key often compute it once).
func keyCRC(key []byte) uint32 { return crc32.Checksum(key, castagnoli) }

// seal appends to b the trailer of the value b[from:] stored under the key
// whose keyCRC is kcrc.
func seal(b []byte, from int, kcrc uint32) []byte {
	return binary.LittleEndian.AppendUint32(b, crc32.Update(kcrc, castagnoli, b[from:]))
}

// unseal splits the sealed value b (at least 4 bytes) stored under the key
// whose keyCRC is kcrc into its bytes and reports the checksum it computed
// and the one stored; they differ when the value is damaged (callers word
// the error).
func unseal(b []byte, kcrc uint32) (body []byte, got, want uint32) {
	body = b[:len(b)-4]
	return body, crc32.Update(kcrc, castagnoli, body), binary.LittleEndian.Uint32(b[len(b)-4:])
}
