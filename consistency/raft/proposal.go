package raft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dialkv/dialkv/core"
)

// A proposal is one Raft log entry: the proposer's clock reading, its
// deduplication identity (dedup.go) and either one command or one
// transaction.
//
//	byte    version (2; 1 has no proposer and seq)
//	byte    kind: 1 command, 2 transaction (3: a batch, batch.go; 4: an
//	        import, export.go; 5: a two-phase commit operation, txn.go)
//	int64   now, Unix nanoseconds of the proposer's clock, little endian
//	uint64  proposer (version 2), little endian; 0: not deduplicated
//	uint64  seq (version 2), little endian
//	rest    core.EncodeCommand, core.EncodeTxn or an export
type proposal struct {
	now           int64
	proposer, seq uint64
	cmd           *core.Command
	txn           *core.Txn
	imp           []byte // an export (export.go)
	tx            *txnOp // a two-phase commit operation (txn.go)
}

const (
	proposalVersion   = 2
	proposalVersionV1 = 1
	kindCommand       = 1
	kindTxn           = 2
)

var errBadProposal = errors.New("raft: malformed proposal")

func encodeProposal(p proposal) []byte {
	b := make([]byte, 2, 64)
	b[0] = proposalVersion
	b = binary.LittleEndian.AppendUint64(b, uint64(p.now))
	b = binary.LittleEndian.AppendUint64(b, p.proposer)
	b = binary.LittleEndian.AppendUint64(b, p.seq)
	if p.cmd != nil {
		b[1] = kindCommand
		return append(b, core.EncodeCommand(*p.cmd)...)
	}
	if p.imp != nil {
		b[1] = kindImport
		return append(b, p.imp...)
	}
	if p.tx != nil {
		b[1] = kindTxn2PC
		return append(b, encodeTxnOp(*p.tx)...)
	}
	b[1] = kindTxn
	return append(b, core.EncodeTxn(*p.txn)...)
}

func decodeProposal(b []byte) (proposal, error) {
	var p proposal
	if len(b) < 10 || (b[0] != proposalVersion && b[0] != proposalVersionV1) {
		return p, errBadProposal
	}
	p.now = int64(binary.LittleEndian.Uint64(b[2:10]))
	rest := b[10:]
	if b[0] == proposalVersion {
		if len(rest) < 16 {
			return p, errBadProposal
		}
		p.proposer = binary.LittleEndian.Uint64(rest)
		p.seq = binary.LittleEndian.Uint64(rest[8:])
		rest = rest[16:]
	}
	switch b[1] {
	case kindCommand:
		c, err := core.DecodeCommand(rest)
		if err != nil {
			return p, fmt.Errorf("%w: %w", errBadProposal, err)
		}
		p.cmd = &c
	case kindTxn:
		t, err := core.DecodeTxn(rest)
		if err != nil {
			return p, fmt.Errorf("%w: %w", errBadProposal, err)
		}
		p.txn = &t
	case kindImport:
		p.imp = rest
	case kindTxn2PC:
		o, err := decodeTxnOp(rest)
		if err != nil {
			return p, err
		}
		p.tx = &o
	default:
		return p, errBadProposal
	}
	return p, nil
}
