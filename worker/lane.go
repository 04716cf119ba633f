package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// lane works one app group's FIFO with one job in flight across all
// replicas: it pulls one message (when this replica owns the group), takes
// the group's pacer token and a ledger slot for it, and has its executor
// work it to an outcome. A paused lane costs nothing: its jobs wait in the
// stream.
type lane struct {
	w        *Worker
	group    string
	cons     jetstream.Consumer
	settings atomic.Pointer[Group]
	wake     chan struct{} // a job was admitted
	resumeCh chan struct{} // configuration changed: end a pause early
	running  atomic.Bool

	fc   forecastSnapshot
	exec executor
	own  ownership

	pmu         sync.Mutex
	pausedUntil time.Time
	pauseReason string

	// lastPause is the reason of the pause before this one with no job
	// done in between (run's goroutine only): a repeat is logged at debug.
	lastPause string
}

// newLane builds the lane of group g (its consumer is set by Run).
func newLane(w *Worker, g Group) *lane {
	l := &lane{w: w, group: g.Name, wake: make(chan struct{}, 1)}
	l.settings.Store(&g)
	l.exec = executor{w: w, group: g.Name, settings: &l.settings, fc: &l.fc}
	l.own.failover = w.o.LaneFailover
	return l
}

// poke wakes an idle lane.
func (l *lane) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// resume ends a pause early (new key, new cap). It leaves no token for a
// lane that is not paused: a stale one would end the next pause (a
// configuration fault's backoff) at once.
func (l *lane) resume() {
	l.poke()
	ch := l.resumeChan()
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.pauseReason == "" {
		return
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (l *lane) resumeChan() chan struct{} {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.resumeCh == nil {
		l.resumeCh = make(chan struct{}, 1)
	}
	return l.resumeCh
}

// admitted counts a newly admitted job into the forecast snapshot and wakes
// the lane.
func (l *lane) admitted() {
	l.fc.admitted()
	l.poke()
}

func (l *lane) pauseState() (time.Time, string) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	return l.pausedUntil, l.pauseReason
}

// forecast returns how many jobs are ahead of a newly admitted one, when it
// is forecast to be called, and the current period.
func (l *lane) forecast(ctx context.Context) (int, time.Time, quota.Period, error) {
	w := l.w
	pol, _ := w.o.Policies.Get(l.group)
	now := w.o.Clock.Now()
	per := pol.PeriodAt(now)
	ahead, eta, err := l.fc.forecast(ctx, now, pol, per, snapshotSource{
		pending: func(ctx context.Context) (int, time.Duration, bool, error) {
			info, err := l.cons.Info(ctx)
			if err != nil {
				return 0, 0, false, err
			}
			return int(info.NumPending) + info.NumAckPending, info.PauseRemaining, info.Paused, nil
		},
		usage:  func(ctx context.Context) (quota.Usage, error) { return w.o.Ledger.Usage(ctx, l.group) },
		tokens: func(u quota.Usage) float64 { return w.o.Pacer.SharedTokens(l.group, u) },
	})
	if err != nil {
		return 0, time.Time{}, quota.Period{}, err
	}
	return ahead, eta, per, nil
}

func (l *lane) backlog(ctx context.Context) bool {
	info, err := l.cons.Info(ctx)
	return err != nil || info.NumPending+uint64(info.NumAckPending) > 0
}

// pause stops the lane until until, ctx's end, or resume.
func (l *lane) pause(ctx context.Context, until time.Time, reason string) {
	w := l.w
	// An end already past (a stale reset, an exhausted-until in the past)
	// still waits minPause: the lane looks at the ledger again only then.
	d := max(until.Sub(w.o.Clock.Now()), minPause)
	until = w.o.Clock.Now().Add(d)
	resumed := l.resumeChan()
	l.pmu.Lock()
	l.pausedUntil, l.pauseReason = until, reason
	select { // a token left as the previous pause ended
	case <-resumed:
	default:
	}
	l.pmu.Unlock()
	g := w.o.Metrics.Paused.WithLabelValues(l.group, reason)
	g.Set(1)
	lvl := zapcore.InfoLevel
	if l.lastPause == reason {
		lvl = zapcore.DebugLevel // e.g. a spent quota rechecked every few minutes until its reset
	}
	l.lastPause = reason
	w.log.Log(lvl, "lane paused", zap.String("app_group", l.group), zap.String("reason", reason), zap.Time("until", until))
	over := w.o.Clock.After(d)
	for waiting := true; waiting; {
		select {
		case <-over:
			waiting = false
		case <-ctx.Done():
			waiting = false
		case <-l.resumeChan():
			waiting = false
		case why := <-w.laneLost(l.group): // consumers.go: restore it now, keep pausing
			l.restore(ctx, why)
		}
	}
	g.Set(0)
	l.pmu.Lock()
	l.pausedUntil, l.pauseReason = time.Time{}, ""
	l.pmu.Unlock()
}

func (l *lane) run(ctx, hard context.Context) {
	w := l.w
	l.running.Store(true)
	defer l.running.Store(false)
	haveWork := true
	faults := 0 // consecutive configuration faults, for backoff
	for ctx.Err() == nil {
		if !haveWork {
			select {
			case <-l.wake:
				haveWork = true
			case why := <-w.laneLost(l.group): // consumers.go
				l.restore(ctx, why)
				haveWork = true
			case <-w.o.Clock.After(w.o.RecheckInterval):
				haveWork = l.backlog(ctx)
			case <-ctx.Done():
			}
			continue
		}
		// The token first, as far as this replica knows the bucket: a
		// message is not held waiting for it when the lane owns the group.
		if err := w.o.Pacer.Wait(ctx, l.group); err != nil {
			continue
		}
		start := time.Now()
		end := w.stage(StagePull, true)
		msg, err := l.pull(ctx)
		end()
		if err == nil && msg == nil {
			err = l.deleted() // consumers.go
		}
		switch {
		case consumerLost(err): // consumers.go
			l.restore(ctx, err)
			continue
		case err != nil:
			if ctx.Err() == nil {
				w.log.Warn("lane cannot take a job; retrying", zap.String("app_group", l.group), zap.Error(err))
				w.o.Metrics.InfraFailures.WithLabelValues("lane_acquire").Inc()
				w.sleep(ctx, time.Second)
			}
			continue
		case msg == nil:
			// Empty, or another replica owns the group: keep pulling while
			// the group has jobs, so as to take it over when its owner
			// stops; idle when it has none.
			haveWork = l.pullAgain(ctx)
			if haveWork && time.Since(start) < quickPull {
				// Refused at once (a pin that moved): not a loop.
				w.sleep(ctx, quickPull)
			}
			continue
		}
		n := l.work(ctx, hard, msg)
		l.fc.drop(func() {})
		l.own.released()
		switch n.reason {
		case "":
			faults = 0
			l.lastPause = ""
		case "config_fault":
			faults++
			d := backoff(faults, 5*time.Second, 5*time.Minute, w.jitter)
			l.pause(ctx, w.o.Clock.Now().Add(d), n.reason)
		default:
			l.pause(ctx, n.pauseUntil, n.reason)
		}
	}
	l.handOver(ctx)
}

// handOver lets another replica take the group over at once when this one
// owned it and stops (it holds no message by now).
func (l *lane) handOver(ctx context.Context) {
	if !l.owns() {
		return
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := queue.HandOverLane(hctx, l.w.o.JS, l.group); err != nil {
		l.w.log.Warn("lane not handed over; another replica takes it after the failover time", zap.String("app_group", l.group), zap.Error(err))
	}
}

// pull long-polls the group's FIFO for one message through the pinned
// priority group (queue.EnsureLane). A nil message with a nil error means
// none came: the FIFO is empty, another replica owns the group, or its one
// job in flight is elsewhere. The poll lasts half the failover time, so an
// owner pulls again before its pin lapses, and ends with ctx. FetchNoWait is
// not used: it sets no expiry, and a paused consumer with pending messages
// parks such a request, so it could block forever.
func (l *lane) pull(ctx context.Context) (jetstream.Msg, error) {
	start := time.Now()
	pctx, cancel := context.WithTimeout(ctx, l.w.o.LaneFailover/2)
	defer cancel()
	batch, err := l.cons.Fetch(1, jetstream.FetchContext(pctx), jetstream.FetchPriorityGroup(queue.LanePriorityGroup))
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, err
	}
	var msg jetstream.Msg
	for m := range batch.Messages() {
		msg = m
	}
	err = batch.Error()
	refused := errors.Is(err, jetstream.ErrPinIDMismatch)
	if refused || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = nil // another replica is pinned, nothing came, or the lane stops: pull again
	}
	l.own.pulled(start, msg != nil, refused)
	if msg != nil {
		msg = l.w.gauges.counted(l.group, msg) // gauges.go
	}
	return msg, err
}

// pullAgain reports whether the lane should keep pulling after a pull that
// brought nothing: the group has jobs (pending, or in flight on another
// replica that may stop) and its consumer is not paused by an operator
// (resume sends a wake-up).
func (l *lane) pullAgain(ctx context.Context) bool {
	info, err := l.cons.Info(ctx)
	if err != nil {
		return ctx.Err() == nil
	}
	return !info.Paused && info.NumPending+uint64(info.NumAckPending) > 0
}

// work has the executor take the group's token, a ledger slot and the
// job's records for msg, which the lane holds, and work it to an outcome.
// The slot counts as held (for forecasts) from its reservation to its
// release or the job's ack; the message is counted once before, as
// ack-pending.
func (l *lane) work(ctx, hard context.Context, msg jetstream.Msg) next {
	return l.exec.execute(ctx, hard, msg)
}

// quickPull is how soon an empty pull may be repeated when the server
// answered it at once.
const quickPull = 100 * time.Millisecond

// maxQuotaPause bounds a pause for an exhausted ledger before it is read again.
const maxQuotaPause = 2 * time.Minute

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
