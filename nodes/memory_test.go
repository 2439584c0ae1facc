package nodes

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestParseCacheSize(t *testing.T) {
	meminfo := &fstest.MapFile{Data: []byte("MemTotal:       1000000 kB\nMemFree: 5 kB\n")}
	machine := MemorySource{FS: fstest.MapFS{"proc/meminfo": meminfo}}
	v2 := MemorySource{FS: fstest.MapFS{"proc/meminfo": meminfo, "sys/fs/cgroup/memory.max": {Data: []byte("2000000\n")}}}
	v2max := MemorySource{FS: fstest.MapFS{"proc/meminfo": meminfo, "sys/fs/cgroup/memory.max": {Data: []byte("max\n")}}}
	v1 := MemorySource{FS: fstest.MapFS{"proc/meminfo": meminfo, "sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("4000000\n")}}}
	v1none := MemorySource{FS: fstest.MapFS{"proc/meminfo": meminfo, "sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")}}}
	empty := MemorySource{FS: fstest.MapFS{}}
	for _, tc := range []struct {
		in      string
		mem     MemorySource
		want    int64
		from    string // substring of the derivation
		wantErr string
	}{
		{"268435456", machine, 268435456, "bytes", ""},
		{"256MiB", machine, 256 << 20, "bytes", ""},
		{"2 GiB", machine, 2 << 30, "bytes", ""},
		{"5MB", machine, 5e6, "bytes", ""},
		{"80%", machine, 819200000, "MemTotal", ""},
		{"50%", v2, 1000000, "memory.max", ""},
		{"50%", v2max, 512000000, "MemTotal", ""},
		{"25%", v1, 1000000, "memory.limit_in_bytes", ""},
		{"100%", v1none, 1024000000, "MemTotal", ""},
		{"80%", empty, 0, "", "memory limit"},
		{"0%", machine, 0, "", "percentage"},
		{"120%", machine, 0, "", "percentage"},
		{"lots", machine, 0, "", "want bytes"},
		{"-5", machine, 0, "", "want bytes"},
		{"9999999TiB", machine, 0, "", "too large"},
	} {
		got, from, err := ParseCacheSize(tc.in, tc.mem)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want || !strings.Contains(from, tc.from) {
			t.Errorf("%q = %d (%s), %v; want %d (%s)", tc.in, got, from, err, tc.want, tc.from)
		}
	}
	// The real machine answers something positive.
	if v, from, err := ParseCacheSize("10%", osMemory()); err != nil || v <= 0 {
		t.Errorf("10%% of this machine: %d (%s) %v", v, from, err)
	}
}
