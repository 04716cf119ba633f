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
// else the reason (served with 503).
func Handler(reg *prometheus.Registry, level zap.AtomicLevel, ready func() error, withPprof bool) http.Handler {
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
	// zap's AtomicLevel serves GET {"level":"info"} and PUT {"level":"debug"}.
	mux.Handle(LogLevelPath, level)
	if withPprof {
		mux.HandleFunc(PprofPath, pprof.Index)
		mux.HandleFunc(PprofPath+"cmdline", pprof.Cmdline)
		mux.HandleFunc(PprofPath+"profile", pprof.Profile)
		mux.HandleFunc(PprofPath+"symbol", pprof.Symbol)
		mux.HandleFunc(PprofPath+"trace", pprof.Trace)
	}
	return mux
}
