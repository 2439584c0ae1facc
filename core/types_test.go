package core

import (
	"testing"
	"time"
)

const wrongType = "(error) WRONGTYPE Operation against a key holding the wrong kind of value"

func TestListCommands(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"push pop range", []step{
			{0, "LPUSH l a b c", "(integer) 3"},
			{0, "RPUSH l d", "(integer) 4"},
			{0, "LRANGE l 0 -1", `["c" "b" "a" "d"]`},
			{0, "LRANGE l -2 100", `["a" "d"]`},
			{0, "LRANGE l 5 10", "[]"},
			{0, "LRANGE l 2 1", "[]"},
			{0, "LRANGE l -100 0", `["c"]`},
			{0, "LRANGE nope 0 -1", "[]"},
			{0, "LPOP l", `"c"`},
			{0, "RPOP l 2", `["d" "a"]`},
			{0, "LPOP l 0", "[]"},
			{0, "LPOP l -1", "(error) ERR value is out of range, must be positive"},
			{0, "LPOP l 5", `["b"]`},
			{0, "EXISTS l", "(integer) 0"},
			{0, "LPOP l", "(nil)"},
			{0, "LPOP l 2", "(nil)"},
			{0, "LPUSHX l a", "(integer) 0"},
			{0, "RPUSH l a", "(integer) 1"},
			{0, "LPUSHX l b", "(integer) 2"},
			{0, "LLEN l", "(integer) 2"},
			{0, "LLEN nope", "(integer) 0"},
		}},
		{"index set rem trim", []step{
			{0, "RPUSH l a b a c a", "(integer) 5"},
			{0, "LINDEX l 0", `"a"`},
			{0, "LINDEX l -1", `"a"`},
			{0, "LINDEX l 5", "(nil)"},
			{0, "LINDEX l -6", "(nil)"},
			{0, "LSET l 1 B", "OK"},
			{0, "LSET l 5 x", "(error) ERR index out of range"},
			{0, "LSET nope 0 x", "(error) ERR no such key"},
			{0, "LREM l -2 a", "(integer) 2"},
			{0, "LRANGE l 0 -1", `["a" "B" "c"]`},
			{0, "RPUSH l a a", "(integer) 5"},
			{0, "LREM l 1 a", "(integer) 1"},
			{0, "LRANGE l 0 -1", `["B" "c" "a" "a"]`},
			{0, "LREM l 0 a", "(integer) 2"},
			{0, "LREM l 0 zz", "(integer) 0"},
			{0, "LTRIM l 1 -1", "OK"},
			{0, "LRANGE l 0 -1", `["c"]`},
			{0, "LTRIM l 5 10", "OK"},
			{0, "EXISTS l", "(integer) 0"},
		}},
		{"wrong type", []step{
			{0, "SET s x", "OK"},
			{0, "LPUSH s a", wrongType},
			{0, "LRANGE s 0 -1", wrongType},
			{0, "LPOP s", wrongType},
			{0, "LRANGE s a b", "(error) ERR value is not an integer or out of range"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runScript(t, newTestStore(t), tc.steps) })
	}
}

func TestSetCommands(t *testing.T) {
	runScript(t, newTestStore(t), []step{
		{0, "SADD s c a b a", "(integer) 3"},
		{0, "SADD s a", "(integer) 0"},
		{0, "SMEMBERS s", `["a" "b" "c"]`},
		{0, "SISMEMBER s a", "(integer) 1"},
		{0, "SISMEMBER s z", "(integer) 0"},
		{0, "SMISMEMBER s a z", "[(integer) 1 (integer) 0]"},
		{0, "SCARD s", "(integer) 3"},
		{0, "SADD t b c d", "(integer) 3"},
		{0, "SINTER s t", `["b" "c"]`},
		{0, "SUNION s t", `["a" "b" "c" "d"]`},
		{0, "SDIFF s t", `["a"]`},
		{0, "SDIFF s nope", `["a" "b" "c"]`},
		{0, "SINTER s nope", "[]"},
		{0, "SINTERSTORE d s t", "(integer) 2"},
		{0, "SMEMBERS d", `["b" "c"]`},
		{0, "SINTERSTORE d s nope", "(integer) 0"},
		{0, "EXISTS d", "(integer) 0"},
		{0, "SUNIONSTORE d s t", "(integer) 4"},
		{0, "SDIFFSTORE d s t", "(integer) 1"},
		{0, "SREM s a b c z", "(integer) 3"},
		{0, "EXISTS s", "(integer) 0"},
		{0, "SET str x", "OK"},
		{0, "SADD str a", wrongType},
		{0, "SINTER t str", wrongType},
		{0, "SMEMBERS nope", "[]"},
	})
}

func TestHashCommands(t *testing.T) {
	runScript(t, newTestStore(t), []step{
		{0, "HSET h f1 v1 f2 v2", "(integer) 2"},
		{0, "HSET h f1 w f3 v3", "(integer) 1"},
		{0, "HSET h f1", "(error) ERR wrong number of arguments for 'hset' command"},
		{0, "HGET h f1", `"w"`},
		{0, "HGET h nope", "(nil)"},
		{0, "HMGET h f1 nope f2", `["w" (nil) "v2"]`},
		{0, "HGETALL h", `["f1" "w" "f2" "v2" "f3" "v3"]`},
		{0, "HKEYS h", `["f1" "f2" "f3"]`},
		{0, "HVALS h", `["w" "v2" "v3"]`},
		{0, "HLEN h", "(integer) 3"},
		{0, "HEXISTS h f2", "(integer) 1"},
		{0, "HSTRLEN h f2", "(integer) 2"},
		{0, "HSETNX h f2 x", "(integer) 0"},
		{0, "HSETNX h f4 x", "(integer) 1"},
		{0, "HINCRBY h n 5", "(integer) 5"},
		{0, "HINCRBY h n -7", "(integer) -2"},
		{0, "HINCRBY h f1 1", "(error) ERR hash value is not an integer"},
		{0, "HSET h big 9223372036854775807", "(integer) 1"},
		{0, "HINCRBY h big 1", "(error) ERR increment or decrement would overflow"},
		{0, "HINCRBYFLOAT h fl 1.5", `"1.5"`},
		{0, "HINCRBYFLOAT h fl 1e2", `"101.5"`},
		{0, "HINCRBYFLOAT h f1 1", "(error) ERR hash value is not a float"},
		{0, "HDEL h f1 f2 f3 f4 n big fl nope", "(integer) 7"},
		{0, "EXISTS h", "(integer) 0"},
		{0, "HGETALL h", "[]"},
		{0, "SET s x", "OK"},
		{0, "HSET s a b", wrongType},
		{0, "HGET s a", wrongType},
	})
}

func TestZSetCommands(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"zadd flags", []step{
			{0, "ZADD z 1 a 2 b 3 c", "(integer) 3"},
			{0, "ZADD z 5 a", "(integer) 0"},
			{0, "ZADD z CH 6 a 7 d", "(integer) 2"},
			{0, "ZADD z NX 100 a 4 e", "(integer) 1"},
			{0, "ZSCORE z a", `"6"`},
			{0, "ZADD z XX 100 zz", "(integer) 0"},
			{0, "ZSCORE z zz", "(nil)"},
			{0, "ZADD z GT CH 1 a", "(integer) 0"},
			{0, "ZADD z GT CH 10 a", "(integer) 1"},
			{0, "ZADD z LT CH 20 a", "(integer) 0"},
			{0, "ZADD z LT CH 0.5 a", "(integer) 1"},
			{0, "ZADD z NX XX 1 a", "(error) ERR XX and NX options at the same time are not compatible"},
			{0, "ZADD z NX GT 1 a", "(error) ERR GT, LT, and/or NX options at the same time are not compatible"},
			{0, "ZADD z INCR 1 a 2 b", "(error) ERR INCR option supports a single increment-element pair"},
			{0, "ZADD z INCR 2 a", `"2.5"`},
			{0, "ZADD z NX INCR 2 a", "(nil)"},
			{0, "ZADD z nan a", "(error) ERR value is not a valid float"},
			{0, "ZADD z 1", "(error) ERR wrong number of arguments for 'zadd' command"},
			{0, "ZADD z 1 a 2", "(error) ERR syntax error"},
			{0, "ZADD z inf x -inf y", "(integer) 2"},
			{0, "ZSCORE z x", `"inf"`},
			{0, "ZINCRBY z -inf x", "(error) ERR resulting score is not a number (NaN)"},
			{0, "ZINCRBY z 1.25 b", `"3.25"`},
			{0, "ZINCRBY z 1 new", `"1"`},
			{0, "ZMSCORE z b nope", `["3.25" (nil)]`},
			{0, "ZCARD z", "(integer) 8"},
		}},
		{"ranges", []step{
			{0, "ZADD z 1 a 2 b 3 c 3 d 5 e", "(integer) 5"},
			{0, "ZRANGE z 0 -1", `["a" "b" "c" "d" "e"]`},
			{0, "ZRANGE z 0 1 WITHSCORES", `["a" "1" "b" "2"]`},
			{0, "ZRANGE z 0 -1 REV", `["e" "d" "c" "b" "a"]`},
			{0, "ZREVRANGE z 0 1", `["e" "d"]`},
			{0, "ZRANGE z -2 -1", `["d" "e"]`},
			{0, "ZRANGE z 10 20", "[]"},
			{0, "ZRANGE z 2 3 BYSCORE", `["b" "c" "d"]`},
			{0, "ZRANGE z (2 3 BYSCORE", `["c" "d"]`},
			{0, "ZRANGE z -inf +inf BYSCORE LIMIT 1 2", `["b" "c"]`},
			{0, "ZRANGE z -inf +inf BYSCORE LIMIT 1 -1", `["b" "c" "d" "e"]`},
			{0, "ZRANGE z 5 (2 BYSCORE REV", `["e" "d" "c"]`},
			{0, "ZRANGEBYSCORE z 3 5 WITHSCORES", `["c" "3" "d" "3" "e" "5"]`},
			{0, "ZREVRANGEBYSCORE z 3 -inf", `["d" "c" "b" "a"]`},
			{0, "ZRANGE z 0 1 LIMIT 0 1", "(error) ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"},
			{0, "ZRANGE z x 1 BYSCORE", "(error) ERR min or max is not a float"},
			{0, "ZCOUNT z 3 3", "(integer) 2"},
			{0, "ZCOUNT z (1 +inf", "(integer) 4"},
			{0, "ZRANK z c", "(integer) 2"},
			{0, "ZREVRANK z c", "(integer) 2"},
			{0, "ZREVRANK z a", "(integer) 4"},
			{0, "ZRANK z nope", "(nil)"},
			{0, "ZPOPMIN z", `["a" "1"]`},
			{0, "ZPOPMAX z 2", `["e" "5" "d" "3"]`},
			{0, "ZPOPMIN z -1", "(error) ERR value is out of range, must be positive"},
			{0, "ZPOPMIN z 10", `["b" "2" "c" "3"]`},
			{0, "EXISTS z", "(integer) 0"},
			{0, "ZPOPMIN z", "[]"},
		}},
		{"lex", []step{
			{0, "ZADD z 0 a 0 b 0 c 0 d", "(integer) 4"},
			{0, "ZRANGE z [b (d BYLEX", `["b" "c"]`},
			{0, "ZRANGE z - + BYLEX LIMIT 1 2", `["b" "c"]`},
			{0, "ZRANGE z + (b BYLEX REV", `["d" "c"]`},
			{0, "ZRANGEBYLEX z (a [c", `["b" "c"]`},
			{0, "ZREVRANGEBYLEX z [c -", `["c" "b" "a"]`},
			{0, "ZLEXCOUNT z - +", "(integer) 4"},
			{0, "ZRANGE z a c BYLEX", "(error) ERR min or max not valid string range item"},
			{0, "ZRANGE z - + BYLEX WITHSCORES", "(error) ERR syntax error, WITHSCORES not supported in combination with BYLEX"},
			{0, "ZREM z a b nope", "(integer) 2"},
			{0, "ZREM z c d", "(integer) 2"},
			{0, "EXISTS z", "(integer) 0"},
			{0, "SET s x", "OK"},
			{0, "ZADD s 1 a", wrongType},
			{0, "ZSCORE s a", wrongType},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { runScript(t, newTestStore(t), tc.steps) })
	}
}

func TestKeysAndTTL(t *testing.T) {
	runScript(t, newTestStore(t), []step{
		{0, "TYPE nope", "none"},
		{0, "SET s x", "OK"},
		{0, "RPUSH l x", "(integer) 1"},
		{0, "SADD st x", "(integer) 1"},
		{0, "HSET h f v", "(integer) 1"},
		{0, "ZADD z 1 m", "(integer) 1"},
		{0, "TYPE s", "string"},
		{0, "TYPE l", "list"},
		{0, "TYPE st", "set"},
		{0, "TYPE h", "hash"},
		{0, "TYPE z", "zset"},
		{0, "EXISTS s l nope s", "(integer) 3"},
		{0, "TTL nope", "(integer) -2"},
		{0, "TTL s", "(integer) -1"},
		{0, "EXPIRE nope 10", "(integer) 0"},
		{0, "EXPIRE l 10", "(integer) 1"},
		{0, "TTL l", "(integer) 10"},
		{0, "EXPIRE l 20 NX", "(integer) 0"},
		{0, "EXPIRE l 5 GT", "(integer) 0"},
		{0, "EXPIRE l 20 GT", "(integer) 1"},
		{0, "EXPIRE l 30 LT", "(integer) 0"},
		{0, "EXPIRE s 30 XX", "(integer) 0"},
		{0, "EXPIRE s 30 GT", "(integer) 0"},
		{0, "EXPIRE s 30 LT", "(integer) 1"},
		{0, "EXPIRE s 30 NX XX", "(error) ERR NX and XX, GT or LT options at the same time are not compatible"},
		{0, "EXPIRE s 30 BOGUS", "(error) ERR Unsupported option BOGUS"},
		{0, "PERSIST s", "(integer) 1"},
		{0, "PERSIST s", "(integer) 0"},
		{0, "PEXPIRE h 1500", "(integer) 1"},
		{0, "PTTL h", "(integer) 1500"},
		{0, "TTL h", "(integer) 2"},
		{time.Second, "TTL h", "(integer) 1"},
		// A collection keeps its TTL when modified; RPUSH to l keeps it.
		{time.Second, "RPUSH l y", "(integer) 2"},
		{time.Second, "TTL l", "(integer) 19"},
		{1500 * time.Millisecond, "HGET h f", `"v"`},
		{1501 * time.Millisecond, "HGET h f", "(nil)"},
		{1501 * time.Millisecond, "EXISTS h", "(integer) 0"},
		{1501 * time.Millisecond, "HSET h f2 v2", "(integer) 1"},
		{1501 * time.Millisecond, "HGETALL h", `["f2" "v2"]`},
		{1501 * time.Millisecond, "TTL h", "(integer) -1"},
		{2 * time.Second, "EXPIRE z -1", "(integer) 1"},
		{2 * time.Second, "EXISTS z", "(integer) 0"},
		{2 * time.Second, "EXPIREAT st 1", "(integer) 1"},
		{2 * time.Second, "EXISTS st", "(integer) 0"},
		{2 * time.Second, "SET k v PXAT 1767225610000", "OK"},
		{2 * time.Second, "PTTL k", "(integer) 8000"},
		{2 * time.Second, "DEL s l nope", "(integer) 2"},
		{2 * time.Second, "NOSUCH x", "(error) UNKNOWN unknown command 'NOSUCH'"},
	})
}

func TestLimits(t *testing.T) {
	s, err := NewStore(NewMemEngine(), Limits{MaxKeySize: 8, MaxValueSize: 16, LargeValueWarn: 10})
	if err != nil {
		t.Fatal(err)
	}
	runScript(t, s, []step{
		{0, "SET 123456789 v", "(error) KEYTOOLARGE key of 9 bytes exceeds the limit of 8 bytes"},
		{0, "MSET a 1 123456789 2", "(error) KEYTOOLARGE*"},
		{0, "GET a", "(nil)"},
		{0, "SET k 12345678901234567", "(error) TOOLARGE value of 17 bytes exceeds the limit of 16 bytes"},
		{0, "SET k 12345678901", "OK"},
		{0, "APPEND k 123456", "(error) TOOLARGE*"},
		{0, "GET k", `"12345678901"`},
		// Collections are one record: the limit bounds the whole encoding.
		{0, "RPUSH l 1234567 1234567", "(error) TOOLARGE*"},
	})
	if w := s.Stats().LargeValueWarns; w != 1 {
		t.Fatalf("LargeValueWarns %d, want 1", w)
	}
}

func TestScans(t *testing.T) {
	s := newTestStore(t)
	for _, k := range []string{"a", "b1", "b2", "b3", "b4", "c", "tmp"} {
		s.Apply(t0, Cmd("SET", k, "v"))
	}
	s.Apply(t0, Cmd("SET", "b25", "v", "PX", "10"))
	runScript(t, s, []step{
		{0, "SCAN.PREFIX b '' COUNT 2", `["b2" ["b1" "b2"]]`},
		{0, "SCAN.PREFIX b b2 COUNT 2", `["b3" ["b25" "b3"]]`},
		{time.Second, "SCAN.PREFIX b b2 COUNT 2", `["" ["b3" "b4"]]`},
		{time.Second, "SCAN.PREFIX b b4 COUNT 2", `["" []]`},
		{time.Second, "SCAN.PREFIX b '' COUNT 4", `["" ["b1" "b2" "b3" "b4"]]`},
		{time.Second, "SCAN.PREFIX '' '' COUNT 100", `["" ["a" "b1" "b2" "b3" "b4" "c" "tmp"]]`},
		{time.Second, "SCAN.RANGE b2 c '' COUNT 10", `["" ["b2" "b3" "b4"]]`},
		{time.Second, "SCAN.RANGE b2 '' '' COUNT 10", `["" ["b2" "b3" "b4" "c" "tmp"]]`},
		{time.Second, "SCAN.RANGE c b '' COUNT 10", `["" []]`},
		{time.Second, "SCAN.PREFIX b '' COUNT 0", "(error) ERR value is out of range, must be positive"},
		{time.Second, "SCAN.PREFIX b '' LIMIT 2", "(error) ERR syntax error"},
	})
	// The empty key never ends a non-final page.
	s.Apply(t0, Cmd("SET", "", "v"))
	if got := render(s.Apply(t0, Cmd("SCAN.PREFIX", "", "", "COUNT", "1"))); got != `["a" ["" "a"]]` {
		t.Fatalf("scan from the empty key: %s", got)
	}
}

// TestScanDuringWrites: a scan interleaved with writes returns each key at
// most once, and every key that exists throughout exactly once.
func TestScanDuringWrites(t *testing.T) {
	s := newTestStore(t)
	for i := 0; i < 50; i++ {
		s.Apply(t0, Cmd("SET", keyN(i*2), "v"))
	}
	seen := map[string]int{}
	cursor := []byte{}
	for round := 0; ; round++ {
		res, err := s.Scan(t0, nil, cursor, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range res.Keys {
			seen[string(k)]++
		}
		// Writes between pages: new keys before and after the cursor, and
		// deletes of stable keys are not made (they must be seen).
		s.Apply(t0, Cmd("SET", keyN(round*2+1), "new"))
		s.Apply(t0, Cmd("SET", keyN(99-round*2), "new"))
		if len(res.Cursor) == 0 {
			break
		}
		cursor = res.Cursor
	}
	for k, n := range seen {
		if n > 1 {
			t.Fatalf("key %s returned %d times", k, n)
		}
	}
	for i := 0; i < 50; i++ {
		if seen[keyN(i*2)] != 1 {
			t.Fatalf("stable key %s seen %d times", keyN(i*2), seen[keyN(i*2)])
		}
	}
}

func keyN(i int) string { return string([]byte{'k', byte('0' + i/10), byte('0' + i%10)}) }
