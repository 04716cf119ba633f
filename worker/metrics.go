package worker

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sendid/sendid/queue"
)

// Metrics are the worker's Prometheus collectors. Quota and backlog gauges
// are kept in memory by the worker (gauges.go) and read at scrape time
// without a NATS call.
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
	InDoubt       *prometheus.CounterVec   // jobs found with a call in doubt, by app_group

	// beforePaused runs at scrape time just before Paused is collected
	// (set by Worker.Run: it refreshes reason "operator").
	beforePaused atomic.Pointer[func()]
	// ConsumerRecreated counts consumers brought back after they were
	// deleted, by consumer name (admission, lane_<group>).
	ConsumerRecreated *prometheus.CounterVec
	// Orphaned is the number of admitted jobs waiting for an app group that
	// is not configured, by app_group (set at start and on reload).
	Orphaned *prometheus.GaugeVec
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
			Help: "Braze call latency.", Buckets: LatencyBuckets}, []string{"app_group"}),
		Paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sendid_lane_paused",
			Help: "1 while an app group's lane is paused, by reason (quota, rate_limited, config_fault, infra, operator)."}, []string{"app_group", "reason"}),
		ConfigFaults: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_braze_config_faults_total",
			Help: "Braze answers 401/403/404: key, permission or URL problems."}, []string{"app_group"}),
		InfraFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_infra_errors_total",
			Help: "NATS, stream or KV errors that made a job wait, by stage."}, []string{"stage"}),
	}
	m.InDoubt = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_jobs_in_doubt_total",
		Help: "Jobs found with an earlier call that may have reached Braze without its answer recorded (retried or failed per the in_doubt setting)."}, []string{"app_group"})
	m.ConsumerRecreated = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_consumer_recreated_total",
		Help: "Consumers recreated after they disappeared (deleted by hand, lost by the server), by consumer."}, []string{"consumer"})
	m.ConsumerRecreated.WithLabelValues(queue.AdmissionName)
	m.Orphaned = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sendid_orphaned_jobs",
		Help: "Admitted jobs waiting for an app group that is no longer configured (sendidctl orphans)."}, []string{"app_group"})
	for _, st := range infraStages {
		m.InfraFailures.WithLabelValues(st)
	}
	if reg != nil {
		reg.MustRegister(m.Collectors()...)
	}
	return m
}

// LatencyBuckets are the Braze call latency buckets: 5 ms doubling to
// 40.96 s, past the call timeout (30 s at most by default), so that calls
// cut by the timeout land in a bucket of their own rather than only in +Inf.
var LatencyBuckets = prometheus.ExponentialBuckets(0.005, 2, 14)

// Values of the status and reason labels that InitGroup creates at zero.
var (
	finalStatuses = []string{"created", "failed", "expired"}
	pauseReasons  = []string{"quota", "rate_limited", "config_fault", "infra", "operator", "record_held"}
	initCodes     = []string{"429"} // the code alerts watch for
	// infraStages are the stage values of InfraFailures that NewMetrics
	// creates at 0 (a burst of errors of a stage born in one scrape would
	// show no increase). A new stage belongs here (TestInfraStagesInitialised
	// finds the stages the code names).
	infraStages = []string{"", "admission_consume", "admit", "forecast", "job_record", "pair_record",
		"publish_result", "lane_acquire", "record", "dead_letter", "owner", "pair_owner"}
)

// InitGroup creates every labelled series of an app group at 0, so that
// its first event is an increase from 0 that increase() and rate() see
// (a series born at 1 has no increase). Called for each configured group
// at start and for groups added by a reload. Collectors added to Metrics
// with an app_group label belong here too.
func (m *Metrics) InitGroup(group string) {
	for _, s := range finalStatuses {
		m.Jobs.WithLabelValues(group, s)
	}
	m.Admitted.WithLabelValues(group)
	m.Deferred.WithLabelValues(group)
	m.DeadLettered.WithLabelValues(group)
	for _, c := range initCodes {
		m.Requests.WithLabelValues(group, c)
	}
	m.Latency.WithLabelValues(group)
	for _, r := range pauseReasons {
		m.Paused.WithLabelValues(group, r)
	}
	m.ConfigFaults.WithLabelValues(group)
	m.InDoubt.WithLabelValues(group)
	m.ConsumerRecreated.WithLabelValues(queue.LaneConsumer(group))
}

// pausedCollector collects Paused after running the beforePaused hook, so
// that state read at scrape time is in the same scrape.
type pausedCollector struct{ m *Metrics }

func (c pausedCollector) Describe(ch chan<- *prometheus.Desc) { c.m.Paused.Describe(ch) }

func (c pausedCollector) Collect(ch chan<- prometheus.Metric) {
	if f := c.m.beforePaused.Load(); f != nil {
		(*f)()
	}
	c.m.Paused.Collect(ch)
}

// Collectors lists every collector of m.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Jobs, m.Admitted, m.Deferred, m.DeadLettered, m.Requests, m.Latency, pausedCollector{m}, m.ConfigFaults, m.InfraFailures,
		m.InDoubt, m.ConsumerRecreated, m.Orphaned}
}
