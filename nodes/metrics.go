package nodes

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dialkv/dialkv/consistency"
	"github.com/dialkv/dialkv/consistency/causal"
	"github.com/dialkv/dialkv/nodes/security"
	"github.com/dialkv/dialkv/transport"
)

// metrics are the node's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	openConns prometheus.Gauge
	conns     *prometheus.CounterVec
	bytesIn   prometheus.Counter
	bytesOut  prometheus.Counter
	lag       *prometheus.HistogramVec
	// ops caches the series of each API operation's successful requests:
	// looking a labelled series up costs a hash and a lock per request.
	// Filled by newMetrics, read-only afterwards.
	ops     map[string]opMetrics
	corrupt *prometheus.CounterVec
	// reject caches the series of dialkv_rejected_requests_total, one per
	// security.RejectReasons; filled by newMetrics, read-only afterwards.
	reject map[string]prometheus.Counter
}

// opMetrics are one operation's cached series.
type opMetrics struct {
	ok      prometheus.Counter
	latency prometheus.Observer
}

// apiOps are the operations the handler observes.
var apiOps = []string{"call", "execute", "transaction", "scan", "index_query", "publish", "subscribe", "poll",
	"unsubscribe", "create_namespace", "drop_namespace", "list_namespaces"}

var _ transport.Observer = (*metrics)(nil)

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dialkv_requests_total",
			Help: "Client requests by API operation (call, execute, ...) or command, and outcome (ok, error reply, or the exception).",
		}, []string{"op", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dialkv_request_duration_seconds",
			Help:    "Time from decoding a request to encoding its reply, by API operation.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16), // 25 µs .. ~0.8 s
		}, []string{"op"}),
		openConns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dialkv_open_connections", Help: "Client connections open now.",
		}),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dialkv_connections_total",
			Help: "Client connection events: opened, rejected (over --max-conns), closed_<reason> (eof, idle, bad_frame, error, shutdown).",
		}, []string{"event"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dialkv_received_bytes_total", Help: "Bytes of client request frames received.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dialkv_sent_bytes_total", Help: "Bytes of reply frames sent.",
		}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dialkv_" + causal.LagMetric,
			Help: "Causal strategy: propagation lag of the remote writes applied here (apply time minus the write's HLC wall time; includes clock skew), by namespace and source region.",
			// 1 ms .. ~16 s
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"namespace", "source_region"}),
	}
	m.ops = make(map[string]opMetrics, len(apiOps))
	for _, op := range apiOps {
		m.ops[op] = opMetrics{ok: m.requests.WithLabelValues(op, "ok"), latency: m.latency.WithLabelValues(op)}
	}
	m.corrupt = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dialkv_corruption_events_total",
		Help: "Corruption found in a replicated namespace's store and repaired from the other replicas: kind record (records that failed their checksum at recovery, dropped and refilled), store (a store that failed with a checksum error, or a causal siblings-mode store with corrupt replication entries, moved aside and rebuilt), record-read (causal: reads that met a record failing its checksum; the record is then re-fetched from the other regions), record-repaired (causal: such records rebuilt from the other regions), version-lost (causal: a write of this node that no region held after its store was rebuilt, per key and region; logged as \"version lost\"), version-gone (causal: a gone notice of another node's lost write applied here, so that what depends on it proceeds; logged as \"gone notice applied\") or record-scrub (causal: stored values the background scrub found failing their checksum; a corrupt record is then re-fetched from the other regions). Quorum records the background scrub finds corrupt are written again from the replica's copy and counted as record.",
	}, []string{"namespace", "kind"})
	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dialkv_rejected_requests_total",
		Help: "Client requests refused before any work by authentication (unauthenticated, failed logins included), authorization (forbidden), the per-connection rate limit (rate_limited) or load shedding (overloaded).",
	}, []string{"reason"})
	m.reject = make(map[string]prometheus.Counter, len(security.RejectReasons))
	for _, r := range security.RejectReasons {
		m.reject[r] = rejected.WithLabelValues(r) // every reason shows, at 0 until it happens
	}
	m.reg.MustRegister(m.requests, m.latency, m.openConns, m.conns, m.bytesIn, m.bytesOut, m.lag, m.corrupt, rejected,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&nodeCollector{n: n})
	return m
}

func (m *metrics) ConnOpened() { m.openConns.Inc(); m.conns.WithLabelValues("opened").Inc() }
func (m *metrics) ConnClosed(reason string) {
	m.openConns.Dec()
	m.conns.WithLabelValues("closed_" + reason).Inc()
}

// rejected counts a request the Guard refused (security.Guard.OnReject).
func (m *metrics) rejected(reason string) {
	if c, ok := m.reject[reason]; ok {
		c.Inc()
	}
}

func (m *metrics) ConnRejected()  { m.conns.WithLabelValues("rejected").Inc() }
func (m *metrics) BytesIn(n int)  { m.bytesIn.Add(float64(n)) }
func (m *metrics) BytesOut(n int) { m.bytesOut.Add(float64(n)) }

// samples records a hosted replica's measurements; the ones the node has
// no metric for are ignored.
func (m *metrics) samples(namespace string, ss []consistency.Sample) {
	for _, s := range ss {
		switch s.Name {
		case causal.LagMetric:
			m.lag.WithLabelValues(namespace, s.Label).Observe(s.Value)
		case corruptionSample:
			m.corrupt.WithLabelValues(namespace, s.Label).Add(s.Value)
		case repairSample:
			m.corrupt.WithLabelValues(namespace, "record-repaired").Add(s.Value)
		case lostSample:
			m.corrupt.WithLabelValues(namespace, "version-lost").Add(s.Value)
		case goneSample:
			m.corrupt.WithLabelValues(namespace, "version-gone").Add(s.Value)
		}
	}
}

// observe counts one request.
func (m *metrics) observe(op, outcome string, start time.Time) {
	d := time.Since(start).Seconds()
	if om, ok := m.ops[op]; ok {
		if outcome == "ok" {
			om.ok.Inc()
		} else {
			m.requests.WithLabelValues(op, outcome).Inc()
		}
		om.latency.Observe(d)
		return
	}
	m.requests.WithLabelValues(op, outcome).Inc()
	m.latency.WithLabelValues(op).Observe(d)
}

// nodeCollector reports per-namespace store and engine figures at scrape
// time.
type nodeCollector struct{ n *Node }

var (
	descKeys = prometheus.NewDesc("dialkv_keys", "Live keys (approximate: expired keys not yet swept count).", []string{"namespace"}, nil)
	descWarn = prometheus.NewDesc("dialkv_large_value_warnings_total", "Values stored above the large-value warning size.", []string{"namespace"}, nil)
	descExp  = prometheus.NewDesc("dialkv_expired_keys_total", "Keys removed by expiry.", []string{"namespace"}, nil)
	descCorr = prometheus.NewDesc("dialkv_corruptions_total", "Records or blocks that failed their checksum.", []string{"namespace"}, nil)
	descSync = prometheus.NewDesc("dialkv_group_syncs_total", "Engine syncs done for group commits (--fsync=always).", []string{"namespace"}, nil)
	descApp  = prometheus.NewDesc("dialkv_applied_requests_total", "Requests applied by the local strategy.", []string{"namespace"}, nil)
	descDisk = prometheus.NewDesc("dialkv_engine_disk_bytes", "Pebble: bytes on disk (sstables, WAL, ...).", []string{"namespace"}, nil)
	descMem  = prometheus.NewDesc("dialkv_engine_memtable_bytes", "Pebble: memtable bytes.", []string{"namespace"}, nil)
	descComp = prometheus.NewDesc("dialkv_engine_compactions_total", "Pebble: compactions.", []string{"namespace"}, nil)
	descWAL  = prometheus.NewDesc("dialkv_engine_wal_bytes_written_total", "Pebble: bytes written to the WAL.", []string{"namespace"}, nil)
	descL0   = prometheus.NewDesc("dialkv_engine_l0_files", "Pebble: sstables in level 0 (read amplification).", []string{"namespace"}, nil)
	descSubs = prometheus.NewDesc("dialkv_subscriptions", "Live pub/sub subscriptions.", nil, nil)
	descVCH  = prometheus.NewDesc("dialkv_engine_value_cache_hits_total", "Engine reads answered by the value cache.", []string{"namespace"}, nil)
	descVCM  = prometheus.NewDesc("dialkv_engine_value_cache_misses_total", "Engine reads that missed the value cache (read from Pebble).", []string{"namespace"}, nil)
	descVCB  = prometheus.NewDesc("dialkv_engine_value_cache_bytes", "Value cache size (approximate, with per-entry overhead).", []string{"namespace"}, nil)
)

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descKeys, descWarn, descExp, descCorr, descSync, descApp, descDisk, descMem, descComp, descWAL, descL0, descSubs, descVCH, descVCM, descVCB} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descSubs, prometheus.GaugeValue, float64(c.n.hub.count()))
	for _, ns := range c.n.namespaceList() {
		name := ns.spec.Name
		if ns.local != nil {
			st := ns.local.Stats()
			ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(st.Keys), name)
			ch <- prometheus.MustNewConstMetric(descWarn, prometheus.CounterValue, float64(st.LargeValueWarns), name)
			ch <- prometheus.MustNewConstMetric(descExp, prometheus.CounterValue, float64(st.Expired), name)
			ch <- prometheus.MustNewConstMetric(descCorr, prometheus.CounterValue, float64(st.CorruptionsSeen), name)
			ch <- prometheus.MustNewConstMetric(descSync, prometheus.CounterValue, float64(ns.local.Syncs()), name)
			ch <- prometheus.MustNewConstMetric(descApp, prometheus.CounterValue, float64(ns.local.Applied()), name)
		}
		if ns.pebble != nil {
			pm := ns.pebble.Metrics()
			ch <- prometheus.MustNewConstMetric(descDisk, prometheus.GaugeValue, float64(pm.DiskSpaceUsage()), name)
			ch <- prometheus.MustNewConstMetric(descMem, prometheus.GaugeValue, float64(pm.MemTable.Size), name)
			ch <- prometheus.MustNewConstMetric(descComp, prometheus.CounterValue, float64(pm.Compact.Count), name)
			ch <- prometheus.MustNewConstMetric(descWAL, prometheus.CounterValue, float64(pm.WAL.BytesWritten), name)
			ch <- prometheus.MustNewConstMetric(descL0, prometheus.GaugeValue, float64(pm.Levels[0].TablesCount), name)
			vc := ns.pebble.ValueCacheStats()
			ch <- prometheus.MustNewConstMetric(descVCH, prometheus.CounterValue, float64(vc.Hits), name)
			ch <- prometheus.MustNewConstMetric(descVCM, prometheus.CounterValue, float64(vc.Misses), name)
			ch <- prometheus.MustNewConstMetric(descVCB, prometheus.GaugeValue, float64(vc.Bytes), name)
		}
	}
}
