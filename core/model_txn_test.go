package core

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// model side of ApplyTxn: all-or-nothing over a clone.
func (m *model) applyTxn(t Txn) Reply {
	for i, c := range t.Conds {
		v := m.live(string(c.Key))
		var cur uint64
		if v != nil {
			cur = v.ver
		}
		k := string(c.Key)
		msg := ""
		switch c.Kind {
		case CondVersion:
			if cur != c.Version {
				msg = fmt.Sprintf("version of %s is %d, want %d", k, cur, c.Version)
			}
		case CondValue:
			switch {
			case v == nil:
				msg = "value of " + k + ": key does not exist"
			case v.typ != TypeString:
				msg = "value of " + k + ": key holds a " + v.typ.String() + ", not a string"
			case v.s != string(c.Value):
				msg = "value of " + k + " differs"
			}
		case CondExists:
			if v == nil {
				msg = k + " does not exist"
			}
		case CondAbsent:
			if v != nil {
				msg = k + " exists"
			}
		}
		if msg != "" {
			return mErr(CodeConditionFailed, fmt.Sprintf("%d: %s", i, msg))
		}
	}
	c := m.clone()
	var rs []Reply
	for i, cmd := range t.Cmds {
		r := c.apply(cmd)
		if r.IsError() {
			return mErr(r.Err.Code, fmt.Sprintf("command %d (%s): %s", i, cmd.Name, r.Err.Msg))
		}
		rs = append(rs, r)
	}
	*m = *c
	return Array(rs...)
}

func genTxn(t *rapid.T) Txn {
	var txn Txn
	for i, n := 0, rapid.IntRange(0, 2).Draw(t, "conds"); i < n; i++ {
		c := Condition{Key: []byte(genKey.Draw(t, "ckey")), Kind: CondKind(rapid.IntRange(0, 3).Draw(t, "ckind"))}
		switch c.Kind {
		case CondVersion:
			c.Version = uint64(rapid.IntRange(0, 6).Draw(t, "cver"))
		case CondValue:
			c.Value = []byte(genVal.Draw(t, "cval"))
		}
		txn.Conds = append(txn.Conds, c)
	}
	for i, n := 0, rapid.IntRange(1, 4).Draw(t, "cmds"); i < n; i++ {
		txn.Cmds = append(txn.Cmds, fixCmd(genAnyCmd(t)))
	}
	return txn
}

// TestModelTxn: transactions (conditions + commands, all-or-nothing, reads
// inside see the transaction's own writes) against the model, mixed with
// single commands.
func TestModelTxn(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, _ := NewStore(NewMemEngine(), Limits{})
		m := newModel()
		now := t0
		for i, n := 0, rapid.IntRange(5, 60).Draw(t, "steps"); i < n; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 500).Draw(t, "advance_ms")) * time.Millisecond)
			m.now = now.UnixMilli()
			var got, want Reply
			var what string
			if rapid.Bool().Draw(t, "txn") {
				txn := genTxn(t)
				got, want = s.ApplyTxn(now, txn), m.applyTxn(txn)
				what = fmt.Sprintf("txn %+v", txn)
			} else {
				c := fixCmd(genAnyCmd(t))
				got, want = s.Apply(now, c), m.apply(c)
				what = c.String()
			}
			if render(got) != render(want) {
				t.Fatalf("step %d: %s\n store %s\n model %s", i, what, render(got), render(want))
			}
		}
		checkDump(t, s, m, now)
	})
}

// indexQuery is the model's answer to IDX.QUERY.
func (m *model) indexQuery(number bool, field string, eq *string, lo, hi float64) []string {
	type hit struct {
		key string
		sv  string
		nv  float64
	}
	var hits []hit
	for _, k := range sortedKeys(m.keys) {
		v := m.live(k)
		if v == nil || v.typ != TypeHash || !strings.HasPrefix(k, "h") {
			continue
		}
		x, ok := v.h[field]
		if !ok {
			continue
		}
		if number {
			f, err := strconv.ParseFloat(x, 64)
			if err != nil {
				continue
			}
			if eq != nil {
				want, _ := strconv.ParseFloat(*eq, 64)
				if f != want {
					continue
				}
			} else if f < lo || f > hi {
				continue
			}
			hits = append(hits, hit{key: k, nv: f})
		} else {
			if eq != nil && x != *eq {
				continue
			}
			hits = append(hits, hit{key: k, sv: x})
		}
	}
	sort.SliceStable(hits, func(i, j int) bool {
		if number && hits[i].nv != hits[j].nv {
			return hits[i].nv < hits[j].nv
		}
		if !number && hits[i].sv != hits[j].sv {
			return hits[i].sv < hits[j].sv
		}
		return hits[i].key < hits[j].key
	})
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.key
	}
	return out
}

// queryAll pages through an IDX.QUERY with LIMIT page.
func queryAll(t *rapid.T, s *Store, now time.Time, args []string, page int) []string {
	var keys []string
	cursor := ""
	for n := 0; ; n++ {
		r := s.Apply(now, Cmd("IDX.QUERY", append(args, "LIMIT", strconv.Itoa(page), "CURSOR", cursor)...))
		if r.IsError() {
			t.Fatalf("IDX.QUERY %v: %s", args, render(r))
		}
		for _, k := range r.Array[1].Array {
			keys = append(keys, string(k.Str))
		}
		cursor = string(r.Array[0].Str)
		if cursor == "" {
			return keys
		}
		if n > 1000 {
			t.Fatalf("IDX.QUERY %v does not terminate", args)
		}
	}
}

// TestModelIndexes: an index on hashes under prefix "h" stays equal to the
// model's answer through random writes (hash, string, delete, expiry,
// transactions), whether created before or after the data (back-fill).
func TestModelIndexes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s, _ := NewStore(NewMemEngine(), Limits{})
		m := newModel()
		number := rapid.Bool().Draw(t, "number")
		field := rapid.SampledFrom([]string{"f", "n"}).Draw(t, "field")
		typ := "string"
		if number {
			typ = "number"
		}
		create := Cmd("IDX.CREATE", "ix", "ON", "HASH", "PREFIX", "h", "FIELD", field, "TYPE", typ)
		createAt := rapid.IntRange(0, 20).Draw(t, "create_at")
		now := t0
		steps := rapid.IntRange(5, 60).Draw(t, "steps")
		for i := 0; i < steps; i++ {
			now = now.Add(time.Duration(rapid.IntRange(0, 500).Draw(t, "advance_ms")) * time.Millisecond)
			m.now = now.UnixMilli()
			if i == createAt {
				if r := s.Apply(now, create); r.IsError() {
					t.Fatal(render(r))
				}
			}
			switch rapid.IntRange(0, 9).Draw(t, "what") {
			case 0:
				if _, err := s.ExpireStep(now, 1000); err != nil {
					t.Fatal(err)
				}
				m.sweep()
			case 1, 2, 3, 4:
				c := genHashCmd(t)
				s.Apply(now, c)
				m.apply(c)
			case 5:
				txn := Txn{Cmds: []Command{genHashCmd(t), genHashCmd(t), genStringCmd(t)}}
				s.ApplyTxn(now, txn)
				m.applyTxn(txn)
			default:
				c := genStringCmd(t)
				s.Apply(now, c)
				m.apply(c)
			}
			if i < createAt {
				continue
			}
			var args []string
			var want []string
			if rapid.Bool().Draw(t, "eq") {
				v := genVal.Draw(t, "eqval")
				if number {
					v = rapid.SampledFrom([]string{"1", "-2", "10", "0"}).Draw(t, "eqnum")
				}
				args = []string{"ix", "EQ", v}
				want = m.indexQuery(number, field, &v, 0, 0)
			} else if number {
				lo := rapid.IntRange(-3, 11).Draw(t, "lo")
				hi := rapid.IntRange(-3, 11).Draw(t, "hi")
				args = []string{"ix", "RANGE", strconv.Itoa(lo), strconv.Itoa(hi)}
				want = m.indexQuery(true, field, nil, float64(lo), float64(hi))
			} else {
				args = []string{"ix", "RANGE", "-", "+"}
				want = m.indexQuery(false, field, nil, 0, 0)
			}
			got := queryAll(t, s, now, args, rapid.IntRange(1, 3).Draw(t, "page"))
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("step %d: IDX.QUERY %v = %v, model %v", i, args, got, want)
			}
		}
	})
}
