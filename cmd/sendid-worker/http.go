package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/internal/ops"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// serveHTTP serves /metrics, /healthz, /readyz, /loglevel (and pprof when
// asked) until Shutdown. done closes when the server has stopped.
func serveHTTP(addr string, reg *prometheus.Registry, level zap.AtomicLevel, ready func() error, withPprof bool, log *zap.Logger) (*http.Server, <-chan struct{}, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("http listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: logLevelChanges(ops.Handler(reg, level, ready, withPprof), level, ops.LogLevelPath, log), ReadHeaderTimeout: 5 * time.Second}
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

func registerBuildInfo(reg prometheus.Registerer) {
	version, goVersion := braze.Version, ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if version == "dev" && bi.Main.Version != "" {
			version = bi.Main.Version
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sendid_build_info", Help: "Build information.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion}})
	g.Set(1)
	reg.MustRegister(g)
}

var (
	descCap       = prometheus.NewDesc("sendid_quota_cap", "Effective cap of the current quota period.", []string{"app_group"}, nil)
	descUsed      = prometheus.NewDesc("sendid_quota_used", "Slots used in the current quota period.", []string{"app_group"}, nil)
	descRemaining = prometheus.NewDesc("sendid_quota_remaining", "Slots left in the current quota period.", []string{"app_group"}, nil)
	descReset     = prometheus.NewDesc("sendid_quota_period_end_timestamp_seconds", "End of the current quota period (Unix seconds).", []string{"app_group"}, nil)
	descBacklog   = prometheus.NewDesc("sendid_backlog", "Admitted jobs waiting or in flight.", []string{"app_group"}, nil)
)

// quotaCollector reads the ledger and the lane consumers at scrape time.
// These gauges describe a whole app group, not this replica, so only the
// replica that owns the group's lane exports them (see exportsGroup): a sum
// over instances then counts each group once.
type quotaCollector struct {
	mu       sync.Mutex
	w        *worker.Worker
	ledger   quota.Ledger
	js       jetstream.JetStream
	subjects queue.Subjects
}

func (c *quotaCollector) set(w *worker.Worker, l quota.Ledger, js jetstream.JetStream, s queue.Subjects) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w, c.ledger, c.js, c.subjects = w, l, js, s
}

func (c *quotaCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCap, descUsed, descRemaining, descReset, descBacklog} {
		ch <- d
	}
}

func (c *quotaCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	w, ledger, js := c.w, c.ledger, c.js
	c.mu.Unlock()
	if w == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, g := range w.Groups() {
		if !exportsGroup(w, g) {
			continue
		}
		if u, err := ledger.Usage(ctx, g); err == nil {
			ch <- prometheus.MustNewConstMetric(descCap, prometheus.GaugeValue, float64(u.Cap), g)
			ch <- prometheus.MustNewConstMetric(descUsed, prometheus.GaugeValue, float64(u.Used), g)
			ch <- prometheus.MustNewConstMetric(descRemaining, prometheus.GaugeValue, float64(u.Remaining), g)
			ch <- prometheus.MustNewConstMetric(descReset, prometheus.GaugeValue, float64(u.PeriodEnd.Unix()), g)
		}
		if cons, err := js.Consumer(ctx, queue.Stream, queue.LaneConsumer(g)); err == nil {
			if info, err := cons.Info(ctx); err == nil {
				ch <- prometheus.MustNewConstMetric(descBacklog, prometheus.GaugeValue, float64(info.NumPending)+float64(info.NumAckPending), g)
			}
		}
	}
}

// exportsGroup reports whether this replica exports the group-wide gauges
// of group: the replica that owns the group's lane. It is the one place
// that decides it; until lanes report an owner, every replica owns every
// group's lane and exports its gauges.
func exportsGroup(w *worker.Worker, group string) bool {
	return true
}
