package causal

import (
	"testing"
	"time"
)

// TestScrubRecordsDetects: ScrubRecords pages through a running replica's
// stored values, finds none corrupt while they are sound, then finds the
// record damaged under it (without a read of the key), and changes
// nothing: the damaged record is stored as it was.
func TestScrubRecordsDetects(t *testing.T) {
	c := newCluster(t, 15, "us:u1,u2", "")
	x, y := keysWithOwners1(t, c)
	ox := c.nodes["u1"].rep.owner("us", x)
	oy := c.nodes["u1"].rep.owner("us", y)
	c.do(ox, nil, "SET", x, "vx")
	c.do(oy, nil, "SET", y, "vy")
	c.run(time.Second)
	pass := func() (rep ScrubReport, pages int) {
		t.Helper()
		for cur, first := []byte(nil), true; first || cur != nil; first = false {
			next, r, err := c.nodes[ox].rep.ScrubRecords(cur, 1)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			rep.Checked += r.Checked
			rep.Corrupt += r.Corrupt
			rep.Keys = append(rep.Keys, r.Keys...)
			cur = next
		}
		return rep, pages
	}
	if r, pages := pass(); r.Corrupt != 0 || r.Checked < 2 || pages < r.Checked {
		t.Fatalf("sound store: %+v in %d pages, want nothing corrupt over pages of one", r, pages)
	}
	if corruptStored(t, c, ox, prefixValue+x) != 1 {
		t.Fatal("record not found")
	}
	before, err := c.nodes[ox].eng.Get([]byte(prefixValue + x))
	if err != nil {
		t.Fatal(err)
	}
	before = append([]byte(nil), before...)
	r, _ := pass()
	if r.Corrupt != 1 || len(r.Keys) != 1 || r.Keys[0] != prefixValue+x {
		t.Fatalf("after damaging %s: %+v, want exactly it", prefixValue+x, r)
	}
	after, err := c.nodes[ox].eng.Get([]byte(prefixValue + x))
	if err != nil || string(after) != string(before) {
		t.Fatalf("the scrub changed the stored record (%v): it only detects", err)
	}
}
