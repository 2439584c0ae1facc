package core

import (
	"testing"
	"time"
)

func TestStringCommands(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{"get set", []step{
			{0, "GET k", "(nil)"},
			{0, "SET k v", "OK"},
			{0, "GET k", `"v"`},
			{0, "SET k '' ", "OK"},
			{0, "GET k", `""`},
			{0, "SET k v junk", "(error) ERR syntax error"},
			{0, "SET k v NX XX", "(error) ERR syntax error"},
			{0, "SET k v EX 0", "(error) ERR invalid expire time in 'set' command"},
			{0, "SET k v EX x", "(error) ERR value is not an integer or out of range"},
			{0, "GET", "(error) ERR wrong number of arguments for 'get' command"},
		}},
		{"nx xx get", []step{
			{0, "SET k v XX", "(nil)"},
			{0, "SET k v NX", "OK"},
			{0, "SET k w NX", "(nil)"},
			{0, "SET k w NX GET", `"v"`},
			{0, "SET k w XX GET", `"v"`},
			{0, "GET k", `"w"`},
			{0, "SET n x GET", "(nil)"},
			{0, "SADD s a", "(integer) 1"},
			{0, "SET s x GET", "(error) WRONGTYPE Operation against a key holding the wrong kind of value"},
			{0, "SET s x", "OK"},
			{0, "GETSET k z", `"w"`},
			{0, "GETDEL k", `"z"`},
			{0, "GETDEL k", "(nil)"},
			{0, "SETNX k 1", "(integer) 1"},
			{0, "SETNX k 2", "(integer) 0"},
		}},
		{"ttl options", []step{
			{0, "SET k v EX 10", "OK"},
			{0, "TTL k", "(integer) 10"},
			{3 * time.Second, "PTTL k", "(integer) 7000"},
			{3 * time.Second, "SET k w KEEPTTL", "OK"},
			{3 * time.Second, "PTTL k", "(integer) 7000"},
			{3 * time.Second, "SET k w", "OK"},
			{3 * time.Second, "TTL k", "(integer) -1"},
			{3 * time.Second, "SET k w PX 100 KEEPTTL", "(error) ERR syntax error"},
			{3 * time.Second, "SET k w PX 100", "OK"},
			{3*time.Second + 100*time.Millisecond, "GET k", `"w"`},
			{3*time.Second + 101*time.Millisecond, "GET k", "(nil)"},
			{4 * time.Second, "SETEX k 5 v", "OK"},
			{4 * time.Second, "TTL k", "(integer) 5"},
			{4 * time.Second, "SETEX k 0 v", "(error) ERR invalid expire time in 'setex' command"},
		}},
		{"counters", []step{
			{0, "INCR c", "(integer) 1"},
			{0, "INCRBY c 41", "(integer) 42"},
			{0, "DECR c", "(integer) 41"},
			{0, "DECRBY c 50", "(integer) -9"},
			{0, "SET c 9223372036854775807", "OK"},
			{0, "INCR c", "(error) ERR increment or decrement would overflow"},
			{0, "SET c 01", "OK"},
			{0, "INCR c", "(error) ERR value is not an integer or out of range"},
			{0, "SET c ' 1'", ""},
			{0, "SET c +1", "OK"},
			{0, "INCR c", "(error) ERR value is not an integer or out of range"},
			{0, "INCRBY c x", "(error) ERR value is not an integer or out of range"},
			{0, "SADD s a", "(integer) 1"},
			{0, "INCR s", "(error) WRONGTYPE Operation against a key holding the wrong kind of value"},
			{0, "INCRBYFLOAT f 10.5", `"10.5"`},
			{0, "INCRBYFLOAT f 0.1", `"10.6"`},
			{0, "INCRBYFLOAT f -5e3", `"-4989.4"`},
			{0, "INCRBYFLOAT f inf", "(error) ERR increment would produce NaN or Infinity"},
			{0, "INCRBYFLOAT f abc", "(error) ERR value is not a valid float"},
			{0, "SET i 5", "OK"},
			{0, "INCRBYFLOAT i 1", `"6"`},
		}},
		{"conditional incr", []step{
			{0, "INCR c IFVER 0", "(integer) 1"},
			{0, "VERSION c", "(integer) 1"},
			{0, "INCR c IFVER 0", "(error) CONDFAILED version of c is 1, want 0"},
			{0, "INCRBY c 5 IFVER 1", "(integer) 6"},
			{0, "INCRBY c 5 IFVER", "(error) ERR syntax error"},
		}},
		{"append strlen mget mset", []step{
			{0, "APPEND k ab", "(integer) 2"},
			{0, "APPEND k cd", "(integer) 4"},
			{0, "STRLEN k", "(integer) 4"},
			{0, "STRLEN nope", "(integer) 0"},
			{0, "MSET a 1 b 2", "OK"},
			{0, "MSET a 1 b", "(error) ERR wrong number of arguments for 'mset' command"},
			{0, "SADD s x", "(integer) 1"},
			{0, "MGET a b nope s", `["1" "2" (nil) (nil)]`},
			{0, "MSETNX a 9 z 9", "(integer) 0"},
			{0, "GET z", "(nil)"},
			{0, "MSETNX y 9 z 9", "(integer) 1"},
			{0, "MGET y z", `["9" "9"]`},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			runScript(t, newTestStore(t), tc.steps)
		})
	}
}

func TestCASAndVersions(t *testing.T) {
	runScript(t, newTestStore(t), []step{
		{0, "VERSION k", "(integer) 0"},
		{0, "CAS k 1 v", "(error) CONDFAILED version of k is 0, want 1"},
		{0, "CAS k 0 v", "OK"},
		{0, "VERSION k", "(integer) 1"},
		{0, "SET k w IFVER 1", "OK"},
		{0, "SET k x IFVER 1", "(error) CONDFAILED version of k is 2, want 1"},
		{0, "SET k x IFEQ nope", "(error) CONDFAILED value of k differs"},
		{0, "SET k x IFEQ w", "OK"},
		{0, "SET j x IFEQ w", "(error) CONDFAILED value of j: key does not exist"},
		{0, "VERSION k", "(integer) 3"},
		{0, "DEL k", "(integer) 1"},
		{0, "VERSION k", "(integer) 0"},
		// Re-created keys continue from the store-wide counter (3 here),
		// so version 1..3 never come back.
		{0, "SET k again", "OK"},
		{0, "VERSION k", "(integer) 4"},
		{0, "SET other v", "OK"},
		{0, "VERSION other", "(integer) 5"},
	})
	s := newTestStore(t)
	s.Apply(t0, Cmd("SET", "k", "v"))
	r := s.Apply(t0, Cmd("CAS", "k", "7", "w"))
	if r.Err == nil || r.Err.Code != CodeConditionFailed || r.Err.Version != 1 || r.Version != 1 {
		t.Fatalf("CAS failure reply %+v: want CONDFAILED with version 1", r)
	}
	if r := s.Apply(t0, Cmd("SET", "k", "w")); r.Version != 2 {
		t.Fatalf("SET reply version %d, want 2", r.Version)
	}
	if r := s.Apply(t0, Cmd("GET", "k")); r.Version != 2 {
		t.Fatalf("GET reply version %d, want 2", r.Version)
	}
}
