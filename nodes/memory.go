package nodes

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
)

// MemorySource says where a machine's memory limit is read from: the root
// of the file system holding /sys/fs/cgroup and /proc (os.DirFS("/") in
// production, a test directory in tests).
type MemorySource struct{ FS fs.FS }

// unlimitedCgroup: cgroup v1 reports "no limit" as a huge number (near
// 2^63 rounded to the page size); anything this large is no limit.
const unlimitedCgroup = 1 << 60

// Limit returns the memory available to this process and where it came
// from: the cgroup v2 limit (sys/fs/cgroup/memory.max), else the cgroup v1
// limit (sys/fs/cgroup/memory/memory.limit_in_bytes), else the machine's
// MemTotal (proc/meminfo). A cgroup without a limit ("max", or v1's huge
// number) falls through to the next source.
func (m MemorySource) Limit() (int64, string, error) {
	for _, p := range []string{"sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := fs.ReadFile(m.FS, p)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			continue
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, "", fmt.Errorf("memory limit: /%s: %q: %w", p, s, err)
		}
		if v > 0 && v < unlimitedCgroup {
			return v, "/" + p, nil
		}
	}
	f, err := m.FS.Open("proc/meminfo")
	if err != nil {
		return 0, "", fmt.Errorf("memory limit: no cgroup limit and %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil || kb <= 0 {
				return 0, "", fmt.Errorf("memory limit: /proc/meminfo MemTotal %q", fields[1])
			}
			return kb * 1024, "/proc/meminfo MemTotal", nil
		}
	}
	return 0, "", errors.New("memory limit: /proc/meminfo has no MemTotal")
}

// ParseCacheSize parses --cache-size: a number of bytes, optionally with a
// unit (KiB, MiB, GiB, TiB; KB, MB, GB, TB are powers of 1000), or a
// percentage of the memory available to the process ("80%": of the cgroup
// limit, else the machine's RAM; MemorySource.Limit). It returns the size
// and how it was derived.
func ParseCacheSize(s string, mem MemorySource) (int64, string, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		pct, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || pct <= 0 || pct > 100 || math.IsNaN(pct) {
			return 0, "", fmt.Errorf("--cache-size %q: a percentage must be in (0, 100]", s)
		}
		limit, from, err := mem.Limit()
		if err != nil {
			return 0, "", fmt.Errorf("--cache-size %q: %w", s, err)
		}
		size := int64(float64(limit) * pct / 100)
		return size, fmt.Sprintf("%s%% of %d bytes (%s)", p, limit, from), nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 {
		return 0, "", fmt.Errorf("--cache-size %q: want bytes (e.g. 268435456 or 256MiB) or a percentage of RAM (e.g. 80%%)", s)
	}
	if v > math.MaxInt64/mult {
		return 0, "", fmt.Errorf("--cache-size %q: too large", s)
	}
	return v * mult, "bytes", nil
}

// osMemory reads the real machine's limits.
func osMemory() MemorySource { return MemorySource{FS: os.DirFS("/")} }
