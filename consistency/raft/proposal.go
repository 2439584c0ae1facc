package raft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dialkv/dialkv/core"
)

// A proposal is one Raft log entry: the proposer's clock reading and either
// one command or one transaction.
//
//	byte    version (1)
//	byte    kind: 1 command, 2 transaction
//	int64   now, Unix nanoseconds of the proposer's clock, little endian
//	rest    core.EncodeCommand or core.EncodeTxn
type proposal struct {
	now int64
	cmd *core.Command
	txn *core.Txn
}

const (
	proposalVersion = 1
	kindCommand     = 1
	kindTxn         = 2
)

var errBadProposal = errors.New("raft: malformed proposal")

func encodeProposal(p proposal) []byte {
	b := make([]byte, 2, 64)
	b[0] = proposalVersion
	b = binary.LittleEndian.AppendUint64(b, uint64(p.now))
	if p.cmd != nil {
		b[1] = kindCommand
		return append(b, core.EncodeCommand(*p.cmd)...)
	}
	b[1] = kindTxn
	return append(b, core.EncodeTxn(*p.txn)...)
}

func decodeProposal(b []byte) (proposal, error) {
	var p proposal
	if len(b) < 10 || b[0] != proposalVersion {
		return p, errBadProposal
	}
	p.now = int64(binary.LittleEndian.Uint64(b[2:10]))
	switch b[1] {
	case kindCommand:
		c, err := core.DecodeCommand(b[10:])
		if err != nil {
			return p, fmt.Errorf("%w: %w", errBadProposal, err)
		}
		p.cmd = &c
	case kindTxn:
		t, err := core.DecodeTxn(b[10:])
		if err != nil {
			return p, fmt.Errorf("%w: %w", errBadProposal, err)
		}
		p.txn = &t
	default:
		return p, errBadProposal
	}
	return p, nil
}
