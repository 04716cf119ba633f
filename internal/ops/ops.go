// Package ops owns sendid-worker's operations endpoints: the paths (which
// deployment manifests are checked against) and the HTTP handler serving
// metrics, liveness, readiness, the runtime log level and, when asked, pprof.
package ops

import (
	"fmt"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Endpoint paths.
const (
	MetricsPath  = "/metrics"
	HealthPath   = "/healthz"
	ReadyPath    = "/readyz"
	LogLevelPath = "/loglevel"
	PprofPath    = "/debug/pprof/"
)

// Handler serves the endpoints. ready returns nil when the worker is ready,
// else the reason (served with 503). Without options, PUT /loglevel and pprof
// are served to loopback peers only (see WithAdmin), and request bodies are
// capped (see guard.go).
func Handler(reg *prometheus.Registry, level zap.AtomicLevel, ready func() error, withPprof bool, opts ...Option) http.Handler {
	o := options{admin: Admin{AllowLoopback: true}}
	for _, opt := range opts {
		opt(&o)
	}
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc(HealthPath, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc(ReadyPath, func(w http.ResponseWriter, r *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	// GET {"level":"info"} for anyone; PUT {"level":"debug"} for admins.
	mux.Handle(LogLevelPath, logLevel(level, o.admin))
	if withPprof {
		mux.Handle(PprofPath, o.admin.guard(http.HandlerFunc(pprof.Index)))
		mux.Handle(PprofPath+"cmdline", o.admin.guard(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle(PprofPath+"profile", o.admin.guard(http.HandlerFunc(pprof.Profile)))
		mux.Handle(PprofPath+"symbol", o.admin.guard(http.HandlerFunc(pprof.Symbol)))
		mux.Handle(PprofPath+"trace", o.admin.guard(http.HandlerFunc(pprof.Trace)))
	}
	return CapBodies(mux)
}
