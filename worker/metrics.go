package worker

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the worker's Prometheus collectors. Quota and backlog gauges
// are read at scrape time (see Worker.Collector), so the hot path only
// increments counters.
type Metrics struct {
	Jobs          *prometheus.CounterVec   // by app_group, status
	Admitted      *prometheus.CounterVec   // by app_group
	Deferred      *prometheus.CounterVec   // by app_group
	DeadLettered  *prometheus.CounterVec   // by app_group
	Requests      *prometheus.CounterVec   // Braze calls by app_group, code
	Latency       *prometheus.HistogramVec // Braze call seconds by app_group
	Paused        *prometheus.GaugeVec     // 1 while a lane is paused, by app_group, reason
	ConfigFaults  *prometheus.CounterVec   // 401/403/404 answers by app_group
	InfraFailures *prometheus.CounterVec   // NATS/KV errors by stage
}

// NewMetrics registers the collectors with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_jobs_total",
			Help: "Jobs answered, by app group and final status (created, failed, expired)."}, []string{"app_group", "status"}),
		Admitted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_jobs_admitted_total",
			Help: "Jobs admitted to an app group's FIFO."}, []string{"app_group"}),
		Deferred: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_jobs_deferred_total",
			Help: "Deferred notices sent: jobs forecast to run after the current quota period."}, []string{"app_group"}),
		DeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_jobs_dead_lettered_total",
			Help: "Jobs kept on the dead-letter subject after running out of attempts."}, []string{"app_group"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_braze_requests_total",
			Help: "Braze calls by app group and HTTP status (0: no response)."}, []string{"app_group", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sendid_braze_request_duration_seconds",
			Help: "Braze call latency.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"app_group"}),
		Paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sendid_lane_paused",
			Help: "1 while an app group's lane is paused, by reason (quota, rate_limited, config_fault, operator)."}, []string{"app_group", "reason"}),
		ConfigFaults: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_braze_config_faults_total",
			Help: "Braze answers 401/403/404: key, permission or URL problems."}, []string{"app_group"}),
		InfraFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_infra_errors_total",
			Help: "NATS, stream or KV errors that made a job wait, by stage."}, []string{"stage"}),
	}
	if reg != nil {
		reg.MustRegister(m.Collectors()...)
	}
	return m
}

// Collectors lists every collector of m.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Jobs, m.Admitted, m.Deferred, m.DeadLettered, m.Requests, m.Latency, m.Paused, m.ConfigFaults, m.InfraFailures}
}
