package client

import (
	"context"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/dialkv/dialkv/checker"
	"github.com/dialkv/dialkv/core"
)

// readOnly lists the commands that change nothing: always safe to retry.
var readOnly = map[string]bool{
	"GET": true, "MGET": true, "EXISTS": true, "TTL": true, "PTTL": true, "TYPE": true,
	"STRLEN": true, "GETRANGE": true, "VERSION": true, "SMEMBERS": true, "SISMEMBER": true,
	"SMISMEMBER": true, "SCARD": true, "SINTER": true, "SUNION": true, "SDIFF": true,
	"LRANGE": true, "LLEN": true, "LINDEX": true, "HGET": true, "HMGET": true,
	"HGETALL": true, "HKEYS": true, "HVALS": true, "HLEN": true, "HEXISTS": true,
	"ZRANGE": true, "ZREVRANGE": true, "ZRANGEBYSCORE": true, "ZSCORE": true,
	"ZRANK": true, "ZREVRANK": true, "ZCARD": true, "ZCOUNT": true, "SCAN": true,
	"KEYS": true, "DBSIZE": true, "PING": true, "ECHO": true,
}

// stateIdempotent lists writes whose repetition leaves the same state.
var stateIdempotent = map[string]bool{
	"MSET": true, "DEL": true, "UNLINK": true, "SADD": true, "SREM": true,
	"HSET": true, "HDEL": true, "HMSET": true,
}

// isIdempotent reports whether cmd may be repeated when its outcome is
// unknown.
func isIdempotent(c core.Command) bool {
	name := strings.ToUpper(c.Name)
	if readOnly[name] || stateIdempotent[name] {
		return true
	}
	if name == "SET" {
		for _, a := range c.Args[min(2, len(c.Args)):] {
			switch strings.ToUpper(string(a)) {
			case "NX", "XX", "GET", "KEEPTTL", "IFEQ", "IFVER":
				return false
			}
		}
		return true
	}
	return false
}

// Value is the result of a read of one string key.
type Value struct {
	Found   bool   // false: the key does not exist
	Data    []byte // the value when Found
	Version uint64 // the key's version (0 when absent or not reported)
}

// String returns the value as a string ("" when absent).
func (v Value) String() string { return string(v.Data) }

// Get reads a string key.
func (s *Session) Get(ctx context.Context, key string) (Value, error) {
	rec := s.record(checker.Op{F: checker.FGet, Key: key})
	r, m, err := s.call(ctx, core.Command{Name: "GET", Args: [][]byte{[]byte(key)}})
	v := Value{Found: r.Kind == core.KindBulk, Data: r.Str, Version: r.Version}
	s.finish(rec, m, err, func(op *checker.Op) {
		if v.Found {
			op.Value = checker.StrPtr(string(v.Data))
		}
		op.Version = v.Version
	})
	return v, err
}

// Set writes a string key and returns its new version.
func (s *Session) Set(ctx context.Context, key string, value []byte) (uint64, error) {
	return s.set(ctx, key, value, 0)
}

// SetEX writes a string key that expires after ttl (millisecond precision).
func (s *Session) SetEX(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if ttl <= 0 {
		return 0, &Error{Code: CodeInvalid, Msg: "SetEX: ttl must be positive"}
	}
	return s.set(ctx, key, value, ttl)
}

func (s *Session) set(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	rec := s.record(checker.Op{F: checker.FPut, Key: key, Args: []string{string(value)}})
	args := [][]byte{[]byte(key), value}
	if ttl > 0 {
		args = append(args, []byte("PX"), strconv.AppendInt(nil, max(ttl.Milliseconds(), 1), 10))
	}
	r, m, err := s.call(ctx, core.Command{Name: "SET", Args: args})
	s.finish(rec, m, err, func(op *checker.Op) { op.Version = r.Version })
	return r.Version, err
}

// Del deletes keys and returns how many existed.
func (s *Session) Del(ctx context.Context, keys ...string) (int64, error) {
	var rec *checker.Op
	if len(keys) == 1 {
		rec = s.record(checker.Op{F: checker.FDelete, Key: keys[0]})
	}
	args := make([][]byte, len(keys))
	for i, k := range keys {
		args[i] = []byte(k)
	}
	r, m, err := s.call(ctx, core.Command{Name: "DEL", Args: args})
	s.finish(rec, m, err, nil)
	return r.Int, err
}

// Incr adds delta to the integer at key (a missing key counts as 0) and
// returns the new value. It is not retried when its outcome is unknown.
func (s *Session) Incr(ctx context.Context, key string, delta int64) (int64, error) {
	rec := s.record(checker.Op{F: checker.FIncr, Key: key, Args: []string{strconv.FormatInt(delta, 10)}})
	r, m, err := s.call(ctx, core.Command{Name: "INCRBY", Args: [][]byte{[]byte(key), strconv.AppendInt(nil, delta, 10)}})
	s.finish(rec, m, err, func(op *checker.Op) { op.Int = checker.Int64Ptr(r.Int); op.Version = r.Version })
	return r.Int, err
}

// CAS sets key to value if its current value equals expected (expected nil:
// if the key is absent). It returns false, with a nil error, when the
// condition did not hold.
func (s *Session) CAS(ctx context.Context, key string, expected, value []byte) (bool, error) {
	exp := "" // the checker's cas args: [expected, new]
	if expected != nil {
		exp = string(expected)
	}
	rec := s.record(checker.Op{F: checker.FCAS, Key: key, Args: []string{exp, string(value)}})
	var cmd core.Command
	if expected == nil {
		cmd = core.Command{Name: "SET", Args: [][]byte{[]byte(key), value, []byte("NX")}}
	} else {
		cmd = core.Command{Name: "SET", Args: [][]byte{[]byte(key), value, []byte("IFEQ"), expected}}
	}
	r, m, err := s.call(ctx, cmd)
	if err == nil && r.Kind == core.KindNil {
		err = &Error{Code: CodeConditionFailed, Msg: "CONDFAILED key exists"}
	}
	s.finish(rec, m, err, func(op *checker.Op) { op.Version = r.Version })
	if e := asError(err); e != nil && e.Code == CodeConditionFailed {
		return false, nil
	}
	return err == nil, err
}

// CASVersion sets key to value if its version equals version (0: the key is
// absent) and returns the new version; a mismatch is a CONDFAILED *Error
// carrying the current version.
func (s *Session) CASVersion(ctx context.Context, key string, version uint64, value []byte) (uint64, error) {
	r, _, err := s.call(ctx, core.Command{Name: "CAS", Args: [][]byte{[]byte(key), strconv.AppendUint(nil, version, 10), value}})
	return r.Version, err
}

// SAdd adds members to the set at key and returns how many were new.
func (s *Session) SAdd(ctx context.Context, key string, members ...string) (int64, error) {
	return s.setOp(ctx, "SADD", checker.FSAdd, key, members)
}

// SRem removes members from the set at key and returns how many were there.
func (s *Session) SRem(ctx context.Context, key string, members ...string) (int64, error) {
	return s.setOp(ctx, "SREM", checker.FSRem, key, members)
}

func (s *Session) setOp(ctx context.Context, name, f, key string, members []string) (int64, error) {
	var rec *checker.Op
	if len(members) == 1 {
		rec = s.record(checker.Op{F: f, Key: key, Args: []string{members[0]}})
	}
	args := make([][]byte, 0, 1+len(members))
	args = append(args, []byte(key))
	for _, m := range members {
		args = append(args, []byte(m))
	}
	r, m, err := s.call(ctx, core.Command{Name: name, Args: args})
	s.finish(rec, m, err, func(op *checker.Op) { op.Version = r.Version })
	return r.Int, err
}

// SMembers returns the members of the set at key (empty when absent).
func (s *Session) SMembers(ctx context.Context, key string) ([]string, error) {
	rec := s.record(checker.Op{F: checker.FSMembers, Key: key})
	r, m, err := s.call(ctx, core.Command{Name: "SMEMBERS", Args: [][]byte{[]byte(key)}})
	out := make([]string, len(r.Array))
	for i, a := range r.Array {
		out[i] = string(a.Str)
	}
	s.finish(rec, m, err, func(op *checker.Op) { op.Values = out; op.Version = r.Version })
	return out, err
}

// MGet reads several string keys.
func (s *Session) MGet(ctx context.Context, keys ...string) ([]Value, error) {
	args := make([][]byte, len(keys))
	for i, k := range keys {
		args[i] = []byte(k)
	}
	r, _, err := s.call(ctx, core.Command{Name: "MGET", Args: args})
	if err != nil {
		return nil, err
	}
	out := make([]Value, len(r.Array))
	for i, a := range r.Array {
		out[i] = Value{Found: a.Kind == core.KindBulk, Data: a.Str, Version: a.Version}
	}
	return out, nil
}

// MSet writes several string keys atomically; pairs alternate key, value.
func (s *Session) MSet(ctx context.Context, pairs ...string) error {
	if len(pairs) == 0 || len(pairs)%2 != 0 {
		return &Error{Code: CodeInvalid, Msg: "MSet needs key, value pairs"}
	}
	args := make([][]byte, len(pairs))
	for i, p := range pairs {
		args[i] = []byte(p)
	}
	_, _, err := s.call(ctx, core.Command{Name: "MSET", Args: args})
	return err
}

// ---------------------------------------------------------------- recording

// record starts recording op, or returns nil when the client has no
// recorder (or op is nil-worthy).
func (s *Session) record(op checker.Op) *checker.Op {
	rec := s.c.cfg.rec
	if rec == nil {
		return nil
	}
	op.Client = s.recClient
	op.Session = s.id
	if tok := s.Token(); tok != nil {
		op.TokenIn = hex.EncodeToString(tok)
	}
	op.Invoke = int64(time.Since(s.c.cfg.recStart))
	return rec.Invoke(op)
}

// finish records the outcome of op: ok on success, fail when the operation
// certainly did not take effect, unknown when it may have. Session tokens
// are recorded hex-encoded.
func (s *Session) finish(op *checker.Op, m meta, err error, fill func(*checker.Op)) {
	if op == nil {
		return
	}
	now := int64(time.Since(s.c.cfg.recStart))
	op.Node = m.node
	if m.token != nil {
		op.TokenOut = hex.EncodeToString(m.token)
	}
	if err == nil {
		if fill != nil {
			fill(op)
		}
		s.c.cfg.rec.Finish(op, now, checker.OK)
		return
	}
	op.Error = err.Error()
	e := asError(err)
	if e == nil || e.MaybeApplied || e.Code == CodeTimeout || (e.Code == CodeConnection && e.Sent) || e.Code == CodeProtocol {
		s.c.cfg.rec.Finish(op, now, checker.Unknown)
		return
	}
	s.c.cfg.rec.Finish(op, now, checker.Fail)
}
