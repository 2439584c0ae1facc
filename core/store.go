package core

// Limits bounds what a Store accepts. The zero value means the defaults.
type Limits struct {
	MaxKeySize     int // bytes; default 64 KiB
	MaxValueSize   int // bytes; default 1 MiB
	LargeValueWarn int // bytes; values above this count a warning; default 512 KiB
}

// Stats are counters a Store keeps for metrics.
type Stats struct {
	Keys            int64 // live keys (approximate: expired keys not yet swept count)
	LargeValueWarns int64 // values stored above Limits.LargeValueWarn
	Expired         int64 // keys removed by expiry (lazy or swept)
	CorruptionsSeen int64 // records that failed their checksum
}

// Condition is one precondition of a transaction or conditional write.
type Condition struct {
	Key     []byte
	Kind    CondKind
	Version uint64 // for CondVersion
	Value   []byte // for CondValue
}

// CondKind says what a Condition requires of its key.
type CondKind uint8

// The condition kinds.
const (
	CondVersion CondKind = iota // the key's version equals Version (0: the key is absent)
	CondValue                   // the key is a string equal to Value
	CondExists                  // the key exists
	CondAbsent                  // the key does not exist
)

// Txn is a transaction: if every condition holds, every command is applied,
// all or nothing, and commands read one snapshot of the state as modified by
// the commands before them. Otherwise nothing changes and the reply is a
// CodeConditionFailed error naming the failed condition.
type Txn struct {
	Conds []Condition
	Cmds  []Command
}
