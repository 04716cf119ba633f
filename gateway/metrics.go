package gateway

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the gateway's Prometheus collectors. No label carries a token
// or a caller-chosen value: routes and status codes only.
type Metrics struct {
	Requests *prometheus.CounterVec // by route (create, job), HTTP status code
	Waiting  prometheus.Gauge       // requests holding a waiting slot
}

// NewMetrics registers the collectors with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sendid_gateway_requests_total",
			Help: "Gateway HTTP requests by route (create, job, other) and status code."}, []string{"route", "code"}),
		Waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sendid_gateway_waiting_requests",
			Help: "Gateway requests waiting for their job's answer (bounded by gateway.max_waiting)."}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Waiting)
	}
	return m
}
