package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/internal/ops"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/ui"
	"github.com/sendid/sendid/worker"
)

// operatorPage builds the /ui handler (nil when ui.enabled is false). The
// worker and its groups arrive later through wk.
func operatorPage(cfg *config.Config, adminToken config.Secret, nc *nats.Conn, js jetstream.JetStream, wk *atomic.Pointer[worker.Worker], recent *ui.Recent, log *zap.Logger) http.Handler {
	if !cfg.UI.Enabled {
		return nil
	}
	if cfg.UI.Actions && adminToken.IsZero() {
		log.Warn("ui.actions is on but no admin token is set: the page shows no actions")
	}
	return ui.Handler(ui.Options{
		Source: func() ui.Source {
			if w := wk.Load(); w != nil {
				return w
			}
			return nil
		},
		Ops:     &ui.NATSOperations{NC: nc, JS: js, Subjects: queue.Subjects{Prefix: cfg.SubjectPrefix}},
		Recent:  recent,
		Actions: cfg.UI.Actions, AdminToken: adminToken,
		Log: log.Named("ui"),
	})
}

// serveHTTP serves /metrics, /healthz, /readyz, /loglevel (and pprof when
// asked) until Shutdown. done closes when the server has stopped. admin
// decides who may PUT /loglevel and read pprof.
func serveHTTP(addr string, reg *prometheus.Registry, level zap.AtomicLevel, ready func() error, withPprof bool, page http.Handler, log *zap.Logger, admin ops.Admin) (*http.Server, <-chan struct{}, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	h := logLevelChanges(ops.Handler(reg, level, ready, withPprof, ops.WithAdmin(admin)), level, ops.LogLevelPath, log)
	if page != nil {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		mux.Handle(ui.Path, page)
		mux.Handle(ui.Path+"/", page)
		h = ops.CapBodies(mux)
	}
	srv := ops.NewServer(h, ops.DefaultTimeouts())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", zap.Error(err))
		}
	}()
	log.Info("http listening", zap.String("addr", ln.Addr().String()))
	return srv, done, nil
}

// metricSet is every collector of sendid's own metrics (the Go and process
// collectors come on top in registry). The Grafana dashboard and the alert
// rules are checked against it.
type metricSet struct {
	worker *worker.Metrics
	quota  *quotaCollector
	extra  []prometheus.Collector // build info, NATS connection
}

func newMetricSet(connected func() bool) *metricSet {
	version, goVersion := braze.Version, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if version == "dev" && bi.Main.Version != "" {
			version = bi.Main.Version
		}
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sendid_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion}})
	info.Set(1)
	conn := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sendid_nats_connected", Help: "1 while connected to NATS."},
		func() float64 {
			if connected() {
				return 1
			}
			return 0
		})
	return &metricSet{worker: worker.NewMetrics(nil), quota: &quotaCollector{}, extra: []prometheus.Collector{info, conn}}
}

// collectors lists sendid's own collectors.
func (s *metricSet) collectors() []prometheus.Collector {
	return append(append(s.worker.Collectors(), s.quota), s.extra...)
}

// registry registers every collector, with Go's and the process's.
func (s *metricSet) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(s.collectors()...)
	return reg
}

var (
	descCap       = prometheus.NewDesc("sendid_quota_cap", "Effective cap of the current quota period.", []string{"app_group"}, nil)
	descUsed      = prometheus.NewDesc("sendid_quota_used", "Slots used in the current quota period.", []string{"app_group"}, nil)
	descRemaining = prometheus.NewDesc("sendid_quota_remaining", "Slots left in the current quota period.", []string{"app_group"}, nil)
	descReset     = prometheus.NewDesc("sendid_quota_period_end_timestamp_seconds", "End of the current quota period (Unix seconds).", []string{"app_group"}, nil)
	descBacklog   = prometheus.NewDesc("sendid_backlog", "Admitted jobs waiting or in flight.", []string{"app_group"}, nil)
)

// quotaCollector reports the worker's quota and backlog gauges from
// memory (worker.QuotaGauges): a scrape makes no NATS call, however many
// groups there are. These gauges describe a whole app group, not this
// replica: every replica exports the same values (see exportsGroup), to be
// aggregated with max by (app_group).
type quotaCollector struct {
	mu sync.Mutex
	w  *worker.Worker
}

func (c *quotaCollector) set(w *worker.Worker) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w = w
}

func (c *quotaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCap, descUsed, descRemaining, descReset, descBacklog} {
		ch <- d
	}
}

func (c *quotaCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	w := c.w
	c.mu.Unlock()
	if w == nil {
		return
	}
	for _, g := range w.QuotaGauges() {
		if !exportsGroup(w, g.Group) {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descCap, prometheus.GaugeValue, float64(g.Cap), g.Group)
		ch <- prometheus.MustNewConstMetric(descUsed, prometheus.GaugeValue, float64(g.Used), g.Group)
		ch <- prometheus.MustNewConstMetric(descRemaining, prometheus.GaugeValue, float64(g.Remaining), g.Group)
		ch <- prometheus.MustNewConstMetric(descReset, prometheus.GaugeValue, float64(g.PeriodEnd.Unix()), g.Group)
		if g.Backlog >= 0 {
			ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(g.Backlog), g.Group)
		}
	}
}

// exportsGroup reports whether this replica exports the group-wide gauges
// of group, the one place that decides it: every replica does, with the
// same values (shared ledger, one consumer). worker.Owns cannot decide it:
// an idle group has no owner, and its series would vanish.
func exportsGroup(*worker.Worker, string) bool {
	return true
}
