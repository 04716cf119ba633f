package worker

// observeOperatorPauses makes sendid_lane_paused{reason="operator"} follow
// the lane consumers' server-side pause (sendidctl pause → PauseConsumer)
// until the returned function is called. The state is kept in memory by
// the gauge refresh (gauges.go: re-read at once after sendidctl pause or
// resume, else every gaugeRefreshEvery) and set at scrape time without a
// NATS call, so every replica shows the pause, also one started after it,
// and the gauge returns to 0 when the pause ends by itself.
func (w *Worker) observeOperatorPauses() (stop func()) {
	f := func() { w.refreshOperatorPauses() }
	w.o.Metrics.beforePaused.Store(&f)
	return func() { w.o.Metrics.beforePaused.CompareAndSwap(&f, nil) }
}

// refreshOperatorPauses sets the operator gauge of every group from memory.
func (w *Worker) refreshOperatorPauses() {
	for _, g := range w.Groups() {
		v := 0.0
		if w.operatorPaused(g) {
			v = 1
		}
		w.o.Metrics.Paused.WithLabelValues(g, "operator").Set(v)
	}
}
