package core

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// FuzzDecodeCommand: decoding arbitrary bytes never panics; whatever
// decodes re-encodes to the same bytes, and applying it to a store never
// panics either. `go test` runs the seed corpus in testdata/fuzz; run
// `go test -fuzz=FuzzDecodeCommand -fuzztime=30s ./core` to explore.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{
		Cmd("SET", "k", "v", "EX", "10"), Cmd("GET", "k"), Cmd("ZADD", "z", "1", "a"),
		Cmd("IDX.QUERY", "i", "RANGE", "-", "+"), {Name: "X"},
	} {
		f.Add(EncodeCommand(c))
	}
	f.Add([]byte{})
	f.Add([]byte{codecCommand, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if AsError(err).Code != CodeErr {
				t.Fatalf("decode error %v is not a CodeErr", err)
			}
			return
		}
		if !bytes.Equal(EncodeCommand(c), b) {
			t.Fatalf("re-encoding %x gives %x", b, EncodeCommand(c))
		}
		s, _ := NewStore(NewMemEngine(), Limits{})
		s.Apply(t0, Cmd("SET", "k", "v"))
		s.Apply(t0, c)
	})
}

// FuzzDecodeReplyTxn: the other decoders never panic and round-trip.
func FuzzDecodeReplyTxn(f *testing.F) {
	f.Add(EncodeReply(Array(Int(1), Bulk([]byte("x")), condFailed(3, "c"))))
	f.Add(EncodeTxn(Txn{Conds: []Condition{{Key: []byte("k"), Kind: CondValue, Value: []byte("v")}}, Cmds: []Command{Cmd("GET", "k")}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := DecodeReply(b); err == nil {
			if !bytes.Equal(EncodeReply(r), b) {
				t.Fatalf("reply %x re-encodes to %x", b, EncodeReply(r))
			}
		}
		if txn, err := DecodeTxn(b); err == nil {
			t2, err := DecodeTxn(EncodeTxn(txn))
			if err != nil || !reflect.DeepEqual(EncodeTxn(t2), EncodeTxn(txn)) {
				t.Fatalf("txn %x does not round-trip", b)
			}
		}
	})
}

// TestDeterminism: the same sequence of commands and times, applied twice
// to fresh stores, gives identical replies, versions, dumps and snapshots.
func TestDeterminism(t *testing.T) {
	run := func() ([]string, map[string]string, []byte) {
		s := newTestStore(t)
		var out []string
		now := t0
		for i := 0; i < 400; i++ {
			now = now.Add(time.Duration(i%7) * 100 * time.Millisecond)
			k := keyN(i % 13)
			var c Command
			switch i % 9 {
			case 0:
				c = Cmd("SET", k, keyN(i), "PX", "900")
			case 1:
				c = Cmd("RPUSH", "l"+k, keyN(i))
			case 2:
				c = Cmd("SADD", "s"+k, keyN(i%5), keyN(i%3))
			case 3:
				c = Cmd("HSET", "h"+k, "f", keyN(i%4))
			case 4:
				c = Cmd("ZADD", "z", "1.5", keyN(i%17))
			case 5:
				c = Cmd("INCR", "n"+k)
			case 6:
				c = Cmd("DEL", k, "l"+k)
			case 7:
				c = Cmd("SCAN.PREFIX", "", keyN(i%11), "COUNT", "5")
			default:
				c = Cmd("ZPOPMIN", "z")
			}
			r := s.Apply(now, c)
			out = append(out, render(r)+"@"+string(rune('0'+r.Version%10)))
			if i%50 == 0 {
				if _, err := s.ExpireStep(now, 3); err != nil {
					t.Fatal(err)
				}
			}
		}
		d, err := s.Dump(now)
		if err != nil {
			t.Fatal(err)
		}
		var snap bytes.Buffer
		if err := s.SaveSnapshot(&snap); err != nil {
			t.Fatal(err)
		}
		return out, d, snap.Bytes()
	}
	r1, d1, s1 := run()
	r2, d2, s2 := run()
	if !reflect.DeepEqual(r1, r2) || !reflect.DeepEqual(d1, d2) || !bytes.Equal(s1, s2) {
		t.Fatal("two runs of the same sequence differ")
	}
	if len(d1) == 0 {
		t.Fatal("the sequence left no keys: the test checks nothing")
	}
}
