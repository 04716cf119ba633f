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

	"github.com/sendid/sendid/quota"
)

// lane works one app group's FIFO with one job in flight: a pacer token and
// a ledger slot first, then one message, which its executor works to an
// outcome. A paused lane costs nothing: its jobs wait in the stream.
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
		tokens: func() float64 { return w.o.Pacer.Tokens(l.group) },
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
		if err := w.o.Pacer.Wait(ctx, l.group); err != nil {
			continue
		}
		msg, slot, err := l.acquire(ctx)
		if err == nil && msg == nil {
			err = l.deleted() // consumers.go
		}
		var ex *quota.Exhausted
		switch {
		case errors.As(err, &ex):
			// Look again after at most maxQuotaPause: another replica's
			// momentary probe, a released slot or a raised cap may free one.
			l.pause(ctx, earliest(ex.Until, w.o.Clock.Now().Add(maxQuotaPause)), "quota")
			continue
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
			haveWork = false
			continue
		}
		w.o.Pacer.Take(l.group)
		n := l.exec.execute(ctx, hard, msg, slot)
		l.fc.drop(func() {})
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
}

// acquire takes a slot and then one message; it gives the slot back when
// there is no message. A nil message with a nil error means the FIFO looks
// empty.
//
// The fetch waits at most fetchWait and never holds the snapshot's lock:
// the slot counts as held (for forecasts) from its reservation to its
// release or the job's ack. FetchNoWait is not used: it sets no expiry, and
// a paused consumer with pending messages parks such a request, so it could
// block forever.
func (l *lane) acquire(ctx context.Context) (jetstream.Msg, quota.Slot, error) {
	w := l.w
	var slot quota.Slot
	err := l.fc.hold(func() (err error) {
		slot, err = w.o.Ledger.Reserve(ctx, l.group)
		return err
	})
	if err != nil {
		return nil, quota.Slot{}, err
	}
	var msg jetstream.Msg
	batch, err := l.cons.Fetch(1, jetstream.FetchMaxWait(fetchWait))
	if err == nil {
		for m := range batch.Messages() {
			msg = m
		}
		if err = batch.Error(); errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
			err = nil
		}
	}
	if msg == nil {
		l.fc.drop(func() {
			if rerr := w.o.Ledger.Release(context.WithoutCancel(ctx), slot); rerr != nil {
				w.log.Warn("slot not released", zap.String("app_group", l.group), zap.Error(rerr))
			}
		})
		return nil, quota.Slot{}, err
	}
	return w.gauges.counted(l.group, msg), slot, nil // gauges.go
}

// maxQuotaPause bounds a pause for an exhausted ledger before it is read again.
const maxQuotaPause = 2 * time.Minute

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// fetchWait bounds a lane's wait for a message it was told about: a wake-up
// can arrive a moment before the stream has stored the message.
const fetchWait = 500 * time.Millisecond
