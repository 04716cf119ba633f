package main

import "github.com/prometheus/client_golang/prometheus"

// readyGauge exports /readyz as sendid_ready, so that a rule can alert on a
// replica that is up but not taking jobs (the reason stays on /readyz).
func readyGauge(ready func() error) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sendid_ready",
		Help: "1 while /readyz answers 200: connected, streams and buckets present, admission and every lane running."},
		func() float64 {
			if ready() != nil {
				return 0
			}
			return 1
		})
}
