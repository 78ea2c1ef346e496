package hub

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lowkeyhq/lowkey/devicectl"
	"github.com/lowkeyhq/lowkey/sessions"
)

// metrics are the box's Prometheus metrics: the Go runtime's and the
// process's, and the box's own, all of those named lowkey_*. Each hub has
// its own registry (a test runs several hubs in one process).
type metrics struct {
	reg      *prometheus.Registry
	requests prometheus.Counter
	actions  *prometheus.CounterVec
	runtime  *sessions.Metrics
	// backups counts timed backups by result (done, failed); lastBackup
	// is when the last one was made.
	backups    *prometheus.CounterVec
	lastBackup prometheus.Gauge
}

func newMetrics(h *Hub) *metrics {
	m := &metrics{
		reg:        prometheus.NewRegistry(),
		requests:   prometheus.NewCounter(prometheus.CounterOpts{Name: "lowkey_http_requests_total", Help: "HTTP requests the hub has served."}),
		actions:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lowkey_device_actions_total", Help: "Device actions, by outcome (done, refused, declined, failed, cancelled)."}, []string{"outcome"}),
		runtime:    sessions.NewMetrics(),
		backups:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lowkey_backups_total", Help: "Timed backups, by result (done, failed)."}, []string{"result"}),
		lastBackup: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lowkey_backup_last_success_timestamp_seconds", Help: "When the last timed backup was made (Unix time; 0: none yet in this run)."}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.actions, m.backups, m.lastBackup, boxCollector{h})
	m.reg.MustRegister(m.runtime.Collectors()...)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

var (
	descPaired   = prometheus.NewDesc("lowkey_devices_paired", "Paired computers.", nil, nil)
	descLinks    = prometheus.NewDesc("lowkey_links", "Live links to computers, by path (direct, direct-tcp, relayed) and state.", []string{"path", "state"}, nil)
	descRTT      = prometheus.NewDesc("lowkey_link_rtt_seconds", "Round trip of each online computer's link.", []string{"device"}, nil)
	descFailures = prometheus.NewDesc("lowkey_pairing_failures", "Wrong pairing attempts since pairing was last reopened on the box.", nil, nil)
	descLocked   = prometheus.NewDesc("lowkey_pairing_locked", "1 while pairing is locked.", nil, nil)
	descStore    = prometheus.NewDesc("lowkey_store_disk_bytes", "Disk space the store's files take.", nil, nil)
)

// boxCollector reads the box's state when scraped.
type boxCollector struct{ h *Hub }

func (boxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPaired, descLinks, descRTT, descFailures, descLocked, descStore} {
		ch <- d
	}
}

func (c boxCollector) Collect(ch chan<- prometheus.Metric) {
	h := c.h
	ds, err := h.Devices()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descPaired, err)
	} else {
		ch <- prometheus.MustNewConstMetric(descPaired, prometheus.GaugeValue, float64(len(ds)))
	}
	byPath := map[string]float64{}
	for _, p := range []string{devicectl.PathDirect, devicectl.PathDirectTCP, devicectl.PathRelayed} {
		byPath[p] = 0
	}
	h.mu.Lock()
	for id, l := range h.links {
		path := l.conn.Path()
		if path == "" {
			path = "choosing"
		}
		byPath[path]++
		if r := l.rtt.Load(); r > 0 {
			ch <- prometheus.MustNewConstMetric(descRTT, prometheus.GaugeValue, float64(r)/1e9, id)
		}
	}
	h.mu.Unlock()
	online := 0.0
	for path, n := range byPath {
		online += n
		ch <- prometheus.MustNewConstMetric(descLinks, prometheus.GaugeValue, n, path, "online")
	}
	if err == nil {
		// A paired computer with no link now has no path.
		ch <- prometheus.MustNewConstMetric(descLinks, prometheus.GaugeValue, max(float64(len(ds))-online, 0), "", "offline")
	}
	_, _, _, total, locked := h.window.State()
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.GaugeValue, float64(total))
	l := 0.0
	if locked {
		l = 1
	}
	ch <- prometheus.MustNewConstMetric(descLocked, prometheus.GaugeValue, l)
	if n, err := h.store.DiskBytes(); err != nil {
		ch <- prometheus.NewInvalidMetric(descStore, err)
	} else {
		ch <- prometheus.MustNewConstMetric(descStore, prometheus.GaugeValue, float64(n))
	}
}
