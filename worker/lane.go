package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// lane works one app group's FIFO with one job in flight: a pacer token and
// a ledger slot first, then one message. A paused lane costs nothing: its
// jobs wait in the stream.
type lane struct {
	w        *Worker
	group    string
	cons     jetstream.Consumer
	settings atomic.Pointer[Group]
	wake     chan struct{} // a job was admitted
	resumeCh chan struct{} // configuration changed: end a pause early
	running  atomic.Bool

	// snap orders slot-taking and acks against forecasts: a slot held for a
	// message is counted by the ledger and (as pending or ack-pending) by the
	// consumer; held lets forecast count it once.
	snap sync.Mutex
	held int
	// fc is admission's forecast snapshot (guarded by snap): refreshed from
	// the ledger and the consumer at most every fcMaxAge, and counting the
	// jobs admitted since. Lanes move a job from "ahead" to "used", which
	// leaves their sum — what decides a deferral — unchanged.
	fc struct {
		u      quota.Usage
		ahead  int
		at     time.Time
		tokens float64 // the pacer's tokens at the snapshot: the jobs run since are still "ahead"
		pause  time.Time
	}

	pmu         sync.Mutex
	pausedUntil time.Time
	pauseReason string
}

// poke wakes an idle lane.
func (l *lane) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// resume ends a pause early (new key, new cap).
func (l *lane) resume() {
	l.poke()
	select {
	case l.resumeChan() <- struct{}{}:
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

func (l *lane) admitted() {
	l.snap.Lock()
	l.fc.ahead++
	l.snap.Unlock()
	l.poke()
}

// fcMaxAge is how old admission's forecast snapshot may get. With one
// replica it only misses released slots (a duplicate answered by a lane);
// with several, the jobs other replicas admitted meanwhile.
const fcMaxAge = 5 * time.Second

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
	l.snap.Lock()
	defer l.snap.Unlock()
	if now.Sub(l.fc.at) > fcMaxAge || !l.fc.u.PeriodEnd.Equal(per.End) {
		info, err := l.cons.Info(ctx)
		if err != nil {
			return 0, time.Time{}, quota.Period{}, err
		}
		u, err := w.o.Ledger.Usage(ctx, l.group)
		if err != nil {
			return 0, time.Time{}, quota.Period{}, err
		}
		l.fc.u, l.fc.at, l.fc.tokens = u, now, w.o.Pacer.Tokens(l.group)
		l.fc.ahead = max(int(info.NumPending)+info.NumAckPending-l.held, 0)
		l.fc.pause = time.Time{}
		if info.Paused {
			l.fc.pause = now.Add(info.PauseRemaining)
		}
	}
	// Forecast from the snapshot's moment, with its tokens, so that the jobs
	// run since are counted once (as ahead), not twice (also as spent tokens).
	u := withPause(l.fc.u, !l.fc.pause.IsZero(), l.fc.pause)
	eta := quota.Forecast(l.fc.at, pol, u, l.fc.tokens, l.fc.ahead)
	if eta.Before(now) {
		eta = now
	}
	return l.fc.ahead, eta, per, nil
}

func (l *lane) backlog(ctx context.Context) bool {
	info, err := l.cons.Info(ctx)
	return err != nil || info.NumPending+uint64(info.NumAckPending) > 0
}

// pause stops the lane until until, ctx's end, or resume.
func (l *lane) pause(ctx context.Context, until time.Time, reason string) {
	w := l.w
	d := until.Sub(w.o.Clock.Now())
	if d <= 0 {
		return
	}
	l.pmu.Lock()
	l.pausedUntil, l.pauseReason = until, reason
	l.pmu.Unlock()
	g := w.o.Metrics.Paused.WithLabelValues(l.group, reason)
	g.Set(1)
	w.log.Info("lane paused", zap.String("app_group", l.group), zap.String("reason", reason), zap.Time("until", until))
	select {
	case <-w.o.Clock.After(d):
	case <-ctx.Done():
	case <-l.resumeChan():
	}
	g.Set(0)
	l.pmu.Lock()
	l.pausedUntil, l.pauseReason = time.Time{}, ""
	l.pmu.Unlock()
}

// next is what the lane does after a job.
type next struct {
	pauseUntil time.Time
	reason     string
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
		var ex *quota.Exhausted
		switch {
		case errors.As(err, &ex):
			// Look again after at most maxQuotaPause: another replica's
			// momentary probe, a released slot or a raised cap may free one.
			l.pause(ctx, earliest(ex.Until, w.o.Clock.Now().Add(maxQuotaPause)), "quota")
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
		n := l.process(ctx, hard, msg, slot)
		l.snap.Lock()
		l.held = 0
		l.snap.Unlock()
		switch n.reason {
		case "":
			faults = 0
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
// The fetch waits at most fetchWait and never holds snap: the slot counts as
// held (for forecasts) from its reservation to its release or the job's ack.
// FetchNoWait is not used: it sets no expiry, and a paused consumer with
// pending messages parks such a request, so it could block forever.
func (l *lane) acquire(ctx context.Context) (jetstream.Msg, quota.Slot, error) {
	w := l.w
	l.snap.Lock()
	slot, err := w.o.Ledger.Reserve(ctx, l.group)
	if err == nil {
		l.held = 1
	}
	l.snap.Unlock()
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
		l.snap.Lock()
		if rerr := w.o.Ledger.Release(context.WithoutCancel(ctx), slot); rerr != nil {
			w.log.Warn("slot not released", zap.String("app_group", l.group), zap.Error(rerr))
		}
		l.held = 0
		l.snap.Unlock()
		return nil, quota.Slot{}, err
	}
	return msg, slot, nil
}

// periodGuard is how close to a period's end a call is never started:
// 100ms, or 1% of a short period.
func periodGuard(p quota.Period) time.Duration {
	return min(100*time.Millisecond, p.End.Sub(p.Start)/100)
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

// job is the state of one fetched message while the lane works on it.
type job struct {
	msg  jetstream.Msg
	seq  uint64
	spec queue.Job
	rec  queue.JobRecord
	rev  uint64
}

func (j *job) result(status string) queue.Result {
	return queue.Result{ID: j.spec.ID, AppGroup: j.rec.AppGroup, CampaignID: j.spec.CampaignID, SendID: j.spec.SendID,
		Status: status, Attempts: j.rec.Attempts, Meta: j.spec.Meta}
}

// process works one message to an answer, or puts it back. It owns slot.
func (l *lane) process(ctx, hard context.Context, msg jetstream.Msg, slot quota.Slot) next {
	w := l.w
	release := func() {
		if err := w.o.Ledger.Release(hard, slot); err != nil {
			w.log.Warn("slot not released", zap.String("app_group", l.group), zap.Error(err))
		}
	}
	meta, err := msg.Metadata()
	if err != nil {
		release()
		_ = msg.Term()
		return next{}
	}
	j := &job{msg: msg, seq: meta.Sequence.Stream}
	if err := json.Unmarshal(msg.Data(), &j.spec); err != nil || j.spec.ID == "" {
		// Only admission writes here; this is not a job.
		w.log.Error("undecodable message on a ready subject; removing it", zap.String("app_group", l.group), zap.Uint64("seq", j.seq), zap.Error(err))
		release()
		_ = msg.TermWithReason("undecodable")
		return next{}
	}

	// Keep the message ours while we work, however long Braze takes.
	stopTicker := l.keepAlive(hard, msg)
	defer stopTicker()

	var (
		pair   queue.PairRecord
		paired bool
		pErr   error
		wg     sync.WaitGroup
	)
	if j.spec.SendID != "" {
		wg.Go(func() { pair, paired, pErr = w.o.Records.Pair(hard, l.group, j.spec.CampaignID, j.spec.SendID) })
	}
	j.rec, j.rev, err = w.o.Records.Job(hard, j.spec.ID)
	wg.Wait()
	if err == nil && pErr != nil {
		err = pErr
	}
	if err != nil {
		release()
		return l.putBack(j, "record", err)
	}
	if j.rec.Final != nil {
		release()
		stored := *j.rec.Final
		stored.Duplicate = j.rec.Owner != j.seq
		stored.Meta = j.spec.Meta
		l.finish(hard, j, stored, false)
		return next{}
	}
	if j.rec.Owner != 0 && j.rec.Owner != j.seq {
		// Another message with this id is in flight elsewhere: wait for it.
		release()
		_ = msg.NakWithDelay(2 * time.Second)
		return next{}
	}
	j.rec.ID, j.rec.AppGroup, j.rec.Owner = j.spec.ID, l.group, j.seq
	if paired {
		release()
		r := j.result(queue.StatusCreated)
		r.SendID, r.Duplicate = pair.SendID, pair.JobID != j.spec.ID
		l.finish(hard, j, r, true)
		return next{}
	}

	for {
		now := w.o.Clock.Now()
		if j.spec.NotAfter != nil && !now.Before(*j.spec.NotAfter) {
			release()
			r := j.result(queue.StatusExpired)
			r.Error = fail(queue.CodeExpired, "not_after %s passed while the job waited", j.spec.NotAfter.UTC().Format(time.RFC3339))
			l.finish(hard, j, r, true)
			return next{}
		}
		if !slot.Period.Contains(now) || slot.Period.End.Sub(now) < periodGuard(slot.Period) {
			// The period turned (or is about to) while we waited: that slot
			// was never used. A call that leaves just before the boundary
			// could land in Braze's next period, uncounted there.
			release()
			if d := slot.Period.End.Sub(now); d > 0 && !w.sleep(ctx, d) {
				_ = msg.Nak()
				return next{}
			}
			if slot, err = w.o.Ledger.Reserve(ctx, l.group); err != nil {
				return l.putBack(j, "", err)
			}
		}
		// Count the attempt durably before the call.
		j.rec.Attempts++
		rev, err := w.o.Records.PutJob(hard, j.rec, j.rev)
		if err != nil {
			j.rec.Attempts--
			release()
			if errors.Is(err, queue.ErrConflict) {
				_ = msg.NakWithDelay(2 * time.Second)
				return next{}
			}
			return l.putBack(j, "job_record", err)
		}
		j.rev = rev

		g := l.settings.Load()
		req := braze.CreateSendIDRequest{CampaignID: j.spec.CampaignID, SendID: j.spec.SendID}
		callCtx, cancel := context.WithTimeout(hard, w.o.CallTimeout)
		start := time.Now()
		resp, callErr := g.Sender.CreateSendID(callCtx, g.Key, req)
		latency := time.Since(start)
		cancel()
		o := decide(req, resp, callErr, hard.Err())
		l.observe(o, latency)

		// Record a creation before anything else: this is the crash window.
		// The pair record and the job's final record are written together.
		var recorded sync.WaitGroup
		if o.kind == outCreated && j.spec.SendID != "" {
			recorded.Go(func() {
				if err := w.o.Records.PutPair(hard, l.group, j.spec.CampaignID, j.spec.SendID,
					queue.PairRecord{JobID: j.spec.ID, SendID: o.sendID, At: w.o.Clock.Now().UTC()}); err != nil {
					w.log.Error("pair record not written; a redelivery could send this pair again",
						zap.String("job_id", j.spec.ID), zap.Error(err))
				}
			})
		}
		if err := w.o.Ledger.Sync(hard, l.group, o.obs); err != nil {
			w.log.Warn("ledger sync failed", zap.String("app_group", l.group), zap.Error(err))
		}
		if o.notSent {
			release()
		}
		if o.kind != outCreated {
			recorded.Wait()
		}

		switch o.kind {
		case outCreated:
			r := j.result(queue.StatusCreated)
			r.SendID = o.sendID
			l.finish(hard, j, r, true, zap.Duration("braze_latency", latency))
			recorded.Wait()
			return next{}
		case outRejected:
			r := j.result(queue.StatusFailed)
			r.Error = &queue.ResultError{Code: queue.CodeBrazeRejected, Message: o.err.Message, HTTPStatus: o.err.StatusCode}
			l.finish(hard, j, r, true, zap.Duration("braze_latency", latency))
			return next{}
		case outRateLimited:
			_ = msg.Nak()
			return next{pauseUntil: o.err.ResetAt(w.o.Clock.Now().Add(time.Minute)), reason: "rate_limited"}
		case outConfigFault:
			_ = msg.Nak()
			w.o.Metrics.ConfigFaults.WithLabelValues(l.group).Inc()
			w.log.Error("BRAZE REJECTED THE CONFIGURATION: check the app group's API key, its sends.id.create permission and the REST URL; the lane is paused and no job is failed",
				zap.String("app_group", l.group), zap.Int("http_status", o.err.StatusCode), zap.String("braze_message", o.err.Message))
			return next{reason: "config_fault"}
		case outInterrupted:
			_ = msg.Nak()
			w.log.Warn("call interrupted by shutdown; job put back", zap.String("job_id", j.spec.ID), zap.String("app_group", l.group))
			return next{}
		}

		// outRetry
		if j.rec.Attempts >= w.o.MaxAttempts {
			r := j.result(queue.StatusFailed)
			r.Error = &queue.ResultError{Code: queue.CodeRetriesExhausted,
				Message: "gave up after " + strconv.Itoa(j.rec.Attempts) + " attempts: " + o.err.Error(), HTTPStatus: o.err.StatusCode}
			if err := w.o.Publisher.Dead(hard, l.group, j.spec, r.Error.Message); err != nil {
				return l.putBack(j, "dead_letter", err)
			}
			w.o.Metrics.DeadLettered.WithLabelValues(l.group).Inc()
			l.finish(hard, j, r, true)
			return next{}
		}
		d := backoff(j.rec.Attempts, w.o.RetryBackoff, w.o.RetryMax, w.jitter)
		w.log.Info("braze call failed; retrying", zap.String("job_id", j.spec.ID), zap.String("app_group", l.group),
			zap.Int("attempts", j.rec.Attempts), zap.Duration("backoff", d), zap.Error(o.err))
		if !w.sleep(ctx, d) {
			_ = msg.Nak()
			return next{}
		}
		if err := w.o.Pacer.Wait(ctx, l.group); err != nil {
			_ = msg.Nak()
			return next{}
		}
		w.o.Pacer.Take(l.group)
		if slot, err = w.o.Ledger.Reserve(ctx, l.group); err != nil {
			return l.putBack(j, "", err)
		}
	}
}

// putBack returns the job to the FIFO head. An exhausted ledger pauses the
// lane; other errors are infrastructure trouble worth a short pause.
func (l *lane) putBack(j *job, stage string, err error) next {
	var ex *quota.Exhausted
	if errors.As(err, &ex) {
		_ = j.msg.Nak()
		return next{pauseUntil: ex.Until, reason: "quota"}
	}
	_ = j.msg.Nak()
	if errors.Is(err, context.Canceled) {
		return next{}
	}
	l.w.log.Warn("job put back after an infrastructure error", zap.String("job_id", j.spec.ID), zap.String("app_group", l.group),
		zap.String("stage", stage), zap.Error(err))
	l.w.o.Metrics.InfraFailures.WithLabelValues(stage).Inc()
	return next{pauseUntil: l.w.o.Clock.Now().Add(time.Second), reason: "infra"}
}

// finish stores a final result (when store), publishes it and acks.
func (l *lane) finish(ctx context.Context, j *job, r queue.Result, store bool, extra ...zap.Field) {
	w := l.w
	r.At = w.o.Clock.Now().UTC()
	if store {
		rec := j.rec
		rec.Final = &r
		if _, err := w.o.Records.PutJob(ctx, rec, j.rev); err != nil {
			w.log.Warn("final job record not written", zap.String("job_id", r.ID), zap.Error(err))
		}
	}
	if err := w.o.Publisher.Result(ctx, j.spec.ReplyTo, r); err != nil {
		// Redelivery answers from the stored record.
		w.log.Warn("result not published; job will be redelivered", zap.String("job_id", r.ID), zap.Error(err))
		w.o.Metrics.InfraFailures.WithLabelValues("publish_result").Inc()
		_ = j.msg.NakWithDelay(time.Second)
		return
	}
	// The job leaves ack-pending and the lane's held count together, so a
	// forecast never sees it twice or not at all.
	// A plain ack: a redelivery after a lost ack is answered from the record.
	l.snap.Lock()
	err := j.msg.Ack()
	l.held = 0
	l.snap.Unlock()
	if err != nil {
		w.log.Warn("ack failed; a redelivery will answer from the record", zap.String("job_id", r.ID), zap.Error(err))
	}
	w.o.Metrics.Jobs.WithLabelValues(l.group, r.Status).Inc()
	fields := append([]zap.Field{zap.String("job_id", r.ID), zap.String("app_group", l.group), zap.String("status", r.Status),
		zap.Int("attempts", r.Attempts), zap.Bool("duplicate", r.Duplicate), zap.String("send_id", r.SendID)}, extra...)
	if r.Error != nil {
		fields = append(fields, zap.String("code", r.Error.Code), zap.String("error", r.Error.Message))
	}
	w.log.Info("job finished", fields...)
}

func (l *lane) observe(o outcome, latency time.Duration) {
	m := l.w.o.Metrics
	code := 201
	if o.err != nil {
		code = o.err.StatusCode
	}
	m.Requests.WithLabelValues(l.group, strconv.Itoa(code)).Inc()
	m.Latency.WithLabelValues(l.group).Observe(latency.Seconds())
}

// keepAlive tells the server we are still working on msg until stopped.
func (l *lane) keepAlive(ctx context.Context, msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			case <-ctx.Done():
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
