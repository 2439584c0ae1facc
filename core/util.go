package core

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// Redis's error messages for bad numbers.
var (
	errNotInt     = Errorf(CodeErr, "value is not an integer or out of range")
	errNotFloat   = Errorf(CodeErr, "value is not a valid float")
	errOverflow   = Errorf(CodeErr, "increment or decrement would overflow")
	errSyntax     = Errorf(CodeErr, "syntax error")
	errNaNInf     = Errorf(CodeErr, "increment would produce NaN or Infinity")
	errNotPosLimt = Errorf(CodeErr, "value is out of range, must be positive")
)

func sortStrings(s []string) { sort.Strings(s) }

// parseInt parses a canonical decimal int64 as Redis's string2ll does: no
// sign but '-', no leading zeros, no spaces.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, false
	}
	if strconv.FormatInt(v, 10) != string(b) {
		return 0, false
	}
	return v, true
}

func argInt(b []byte) (int64, *Error) {
	v, ok := parseInt(b)
	if !ok {
		return 0, errNotInt
	}
	return v, nil
}

// parseFloat parses a float argument as Redis does: decimal or exponent
// notation, "inf"/"+inf"/"-inf"; never NaN, no spaces.
func parseFloat(b []byte) (float64, bool) {
	s := string(b)
	if s == "" || strings.TrimSpace(s) != s {
		return 0, false
	}
	switch strings.ToLower(s) {
	case "inf", "+inf", "infinity", "+infinity":
		return math.Inf(1), true
	case "-inf", "-infinity":
		return math.Inf(-1), true
	}
	if strings.ContainsAny(s, "xXpP_nN") { // hex floats, underscores, nan
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// formatFloat renders a float the way Redis 7 replies with scores: the
// shortest representation that round-trips, integers without a fraction
// or exponent below 1e17, "inf"/"-inf" for infinities.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case f == math.Trunc(f) && math.Abs(f) < 1e17:
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// formatFloatHuman renders INCRBYFLOAT results: fixed-point, never an
// exponent, as Redis's LD_STR_HUMAN does.
func formatFloatHuman(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func upper(b []byte) string { return strings.ToUpper(string(b)) }

func bulkStr(s string) Reply { return Bulk([]byte(s)) }

// strArray is an array reply of bulk strings.
func strArray(items [][]byte) Reply {
	rs := make([]Reply, len(items))
	for i, it := range items {
		rs[i] = Bulk(it)
	}
	return Array(rs...)
}

// normRange turns Redis start/stop indexes (negative from the end) into a
// [lo, hi] inclusive range over n items; ok is false when it is empty.
func normRange(start, stop int64, n int) (lo, hi int, ok bool) {
	ln := int64(n)
	if start < 0 {
		start += ln
	}
	if stop < 0 {
		stop += ln
	}
	if start < 0 {
		start = 0
	}
	if stop >= ln {
		stop = ln - 1
	}
	if start > stop || start >= ln {
		return 0, 0, false
	}
	return int(start), int(stop), true
}
