package worker

import (
	"context"
	"time"

	"github.com/sendid/sendid/queue"
)

// observeOperatorPauses makes sendid_lane_paused{reason="operator"} follow
// the lane consumers' server-side pause (sendidctl pause → PauseConsumer)
// until the returned function is called. The state is read at scrape time,
// so every replica shows the pause, also one started after it, and the
// gauge returns to 0 when the pause ends by itself.
func (w *Worker) observeOperatorPauses() (stop func()) {
	f := func() { w.refreshOperatorPauses() }
	w.o.Metrics.beforePaused.Store(&f)
	return func() { w.o.Metrics.beforePaused.CompareAndSwap(&f, nil) }
}

// operatorPauseTimeout bounds the consumer look-ups of one scrape.
const operatorPauseTimeout = 2 * time.Second

// refreshOperatorPauses sets the operator gauge of every group from its
// lane consumer. A group whose consumer cannot be read keeps its last value.
func (w *Worker) refreshOperatorPauses() {
	ctx, cancel := context.WithTimeout(context.Background(), operatorPauseTimeout)
	defer cancel()
	for _, g := range w.Groups() {
		cons, err := w.o.JS.Consumer(ctx, queue.Stream, queue.LaneConsumer(g))
		if err != nil {
			continue
		}
		v := 0.0
		if cons.CachedInfo().Paused {
			v = 1
		}
		w.o.Metrics.Paused.WithLabelValues(g, "operator").Set(v)
	}
}
