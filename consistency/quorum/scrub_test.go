package quorum

import (
	"testing"

	"github.com/dialkv/dialkv/consistency"
)

// TestScrubRepairs: records damaged while a replica runs (an object, the
// only copy of a W=1 write; the HLC record) are found by Scrub, paged by
// its cursor, and written again from the replica's copy: a restart then
// recovers every object and counts no corruption. Sound records are left
// alone, and a stale corrupt record the replica holds no copy of is
// deleted. Fails if Scrub only detects (the restart drops the W=1 write).
func TestScrubRepairs(t *testing.T) {
	c := newCluster(t, 3, p(noAAE...), "", 29)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		c.do("n1", consistency.Options{W: 3}, nil, "SET", k, "v-"+k)
	}
	// n1 alone holds "solo" until anti-entropy or a read repair: W=1 with
	// the other owners cut off.
	c.isolate("n1")
	if r := c.do("n1", consistency.Options{W: 1}, nil, "SET", "solo", "only-here"); str(r) != "OK" {
		c.fatalf("W=1 write: %s", str(r))
	}
	c.heal()
	rep := c.rep("n1")
	eng := c.eng["n1"]
	damage := func(key string) {
		raw, err := eng.Get([]byte(key))
		if err != nil {
			c.fatalf("reading %s: %v", key, err)
		}
		raw[len(raw)-1] ^= 0x5a
		b := eng.NewBatch()
		b.Set([]byte(key), raw)
		if err := b.Commit(false); err != nil {
			c.fatalf("%v", err)
		}
	}
	// A clean pass finds nothing.
	total := ScrubReport{}
	for cur, first := []byte(nil), true; first || cur != nil; first = false {
		next, r, err := rep.Scrub(cur, 2)
		if err != nil {
			c.fatalf("scrub: %v", err)
		}
		total.Checked += r.Checked
		total.Corrupt += r.Corrupt
		cur = next
	}
	if total.Corrupt != 0 || total.Checked < 8 {
		c.fatalf("clean pass: %+v, want 0 corrupt of >= 8 records", total)
	}
	damage(prefixObj + "solo")
	damage(prefixObj + "c")
	damage(keyHLC)
	b := eng.NewBatch()
	b.Set([]byte(prefixObj+"stale"), []byte("not a record"))
	if err := b.Commit(false); err != nil {
		c.fatalf("%v", err)
	}
	total = ScrubReport{}
	pages := 0
	for cur, first := []byte(nil), true; first || cur != nil; first = false {
		next, r, err := rep.Scrub(cur, 3)
		if err != nil {
			c.fatalf("scrub: %v", err)
		}
		pages++
		total.Checked += r.Checked
		total.Corrupt += r.Corrupt
		total.Repaired += r.Repaired
		total.Keys = append(total.Keys, r.Keys...)
		cur = next
	}
	if total.Corrupt != 4 || total.Repaired != 4 || pages < 3 {
		c.fatalf("damaged pass: %+v in %d pages, want 4 corrupt and repaired over >= 3 pages", total, pages)
	}
	if _, err := eng.Get([]byte(prefixObj + "stale")); err == nil {
		c.fatalf("the stale corrupt record is still stored")
	}
	c.collect("n1") // the host syncs the repairs with the next Ready
	c.crash("n1")   // restart from what was synced
	if n := c.rep("n1").Stats().Corrupt; n != 0 {
		c.fatalf("recovery after the scrub found %d corrupt records, want 0", n)
	}
	got := c.dump("n1")
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		if got[k] != `"v-`+k+`"` {
			c.fatalf("after the repair and a restart n1 holds %s = %q", k, got[k])
		}
	}
	if got["solo"] != `"only-here"` {
		c.fatalf("the W=1 write, repaired from n1's copy, is %q after a restart", got["solo"])
	}
}
