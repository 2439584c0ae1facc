package sim

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/dialkv/dialkv/consistency"
)

// meters gathers what replicas that implement consistency.Meter measure
// during a run: their samples, and their counters summed over every
// incarnation of every replica. It changes nothing in the run (no trace
// line, no randomness), so histories stay byte-identical.
type meters struct {
	counters map[string]float64
	samples  map[string][]float64 // "name{label}" -> values
}

// take collects the samples a replica took since the last call.
func (m *meters) take(rep consistency.Replica) {
	mt, ok := rep.(consistency.Meter)
	if !ok {
		return
	}
	for _, s := range mt.TakeSamples() {
		if m.samples == nil {
			m.samples = map[string][]float64{}
		}
		k := s.Name
		if s.Label != "" {
			k += "{" + s.Label + "}"
		}
		m.samples[k] = append(m.samples[k], s.Value)
	}
}

// fold adds a replica incarnation's counters (before a crash, and at the
// end of the run).
func (m *meters) fold(rep consistency.Replica) {
	mt, ok := rep.(consistency.Meter)
	if !ok {
		return
	}
	m.take(rep)
	for k, v := range mt.Counters() {
		if m.counters == nil {
			m.counters = map[string]float64{}
		}
		if strings.HasSuffix(k, "_max") {
			m.counters[k] = math.Max(m.counters[k], v)
		} else {
			m.counters[k] += v
		}
	}
}

// MeasureLines renders a run's (or a sweep's merged) counters and samples,
// one line each, sorted: NAME_sum/NAME_count pairs as their mean, samples
// as count, min, p50, p99 and max.
func MeasureLines(counters map[string]float64, samples map[string][]float64) []string {
	var out []string
	for _, k := range sortedKeys(counters) {
		v := counters[k]
		switch {
		case strings.HasSuffix(k, "_count"):
			continue
		case strings.HasSuffix(k, "_sum"):
			name := strings.TrimSuffix(k, "_sum")
			n := counters[name+"_count"]
			mean := 0.0
			if n > 0 {
				mean = v / n
			}
			out = append(out, fmt.Sprintf("%s mean %.4g over %.0f", name, mean, n))
		default:
			out = append(out, fmt.Sprintf("%s %.4g", k, v))
		}
	}
	for _, k := range sortedKeys(samples) {
		vs := append([]float64(nil), samples[k]...)
		sort.Float64s(vs)
		q := func(p float64) float64 { return vs[int(math.Ceil(p*float64(len(vs))))-1] }
		out = append(out, fmt.Sprintf("%s n=%d min %.4g p50 %.4g p99 %.4g max %.4g", k, len(vs), vs[0], q(0.5), q(0.99), vs[len(vs)-1]))
	}
	return out
}

// mergeMeasures adds b's counters and samples into a's (a sweep's total).
func mergeMeasures(ac map[string]float64, as map[string][]float64, bc map[string]float64, bs map[string][]float64) {
	for k, v := range bc {
		if strings.HasSuffix(k, "_max") {
			ac[k] = math.Max(ac[k], v)
		} else {
			ac[k] += v
		}
	}
	for k, v := range bs {
		as[k] = append(as[k], v...)
	}
}
