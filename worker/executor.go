package worker

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// executor works one fetched message of its app group to an outcome: the
// records, the expiry, the call, the decision, and then finish (answer and
// ack) or putBack (the message returns to the FIFO head), retrying
// retryable failures in place so the group's order holds. It returns what
// the lane does next.
type executor struct {
	w        *Worker
	group    string
	settings *atomic.Pointer[Group]
	fc       *forecastSnapshot
	// lastFault is Braze's message with the last configuration fault.
	lastFault atomic.Pointer[string]
	// granted says the lane's last reservation got a slot (the lane's
	// goroutine only): the next first delivery opens all at once.
	granted bool
}

// next is what the lane does after a job.
type next struct {
	pauseUntil time.Time
	reason     string
}

// job is the state of one fetched message while the lane works on it.
type job struct {
	msg  jetstream.Msg
	seq  uint64
	spec queue.Job
	rec  queue.JobRecord
	rev  uint64
	// pairRev is the revision of this job's pair reservation (0: none held).
	pairRev uint64
	// unread says the records were not read (a first delivery, claimFirst):
	// the job record is still to be created.
	unread bool
	// opened says the job record already marks this attempt's call open
	// (openTogether wrote it with the slot and the pair reservation).
	opened bool
}

func (j *job) result(status string) queue.Result {
	return queue.Result{ID: j.spec.ID, AppGroup: j.rec.AppGroup, CampaignID: j.spec.CampaignID, SendID: j.spec.SendID,
		Status: status, Attempts: j.rec.Attempts, Meta: j.spec.Meta, InDoubt: j.rec.InDoubt}
}

// periodGuard is how close to a period's end a call is never started:
// 100ms, or 1% of a short period.
func periodGuard(p quota.Period) time.Duration {
	return min(100*time.Millisecond, p.End.Sub(p.Start)/100)
}

// execute works one message to an answer, or puts it back: it takes the
// job's slot and records (open), then calls, retrying in place.
func (e *executor) execute(ctx, hard context.Context, msg jetstream.Msg) next {
	w := e.w
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return next{}
	}
	j := &job{msg: msg, seq: meta.Sequence.Stream}
	var bad *queue.ResultError
	if j.spec, bad = w.checkReady(e.group, msg.Data()); bad != nil {
		w.log.Error("message on a ready subject that admission would refuse; answered on the group's results subject and removed",
			zap.String("app_group", e.group), zap.Uint64("seq", j.seq), zap.String("code", bad.Code), zap.String("error", bad.Message))
		r := queue.Result{ID: j.spec.ID, AppGroup: e.group, CampaignID: j.spec.CampaignID, SendID: j.spec.SendID,
			Status: queue.StatusFailed, Error: bad, At: w.o.Clock.Now().UTC()}
		if r.ID == "" {
			r.ID = "ready-" + strconv.FormatUint(j.seq, 10)
		}
		if err := w.o.Publisher.Result(hard, w.o.Subjects.Results(e.group), r); err != nil {
			w.log.Warn("refusal not published", zap.String("app_group", e.group), zap.Error(err))
		}
		_ = msg.TermWithReason(bad.Code)
		return next{}
	}

	// Keep the message ours while we work, however long Braze takes.
	stopTicker := keepAlive(hard, msg, w.o.LaneFailover/3)
	defer stopTicker()

	slot, n, done := e.open(ctx, hard, j, meta.NumDelivered)
	if done {
		return n
	}
	release := func() { e.release(hard, slot) }

	turned := false // a slot of an ended period was given back once
	for first := true; ; first = false {
		now := w.o.Clock.Now()
		if j.spec.NotAfter != nil && !now.Before(*j.spec.NotAfter) {
			release()
			if j.unread { // the id's record decides first, as claim does
				return e.readAgain(hard, j)
			}
			if j.opened { // the call marked open never started
				j.rec.Attempts--
				j.rec.Calling, j.opened = 0, false
			}
			e.dropPair(hard, j)
			r := j.result(queue.StatusExpired)
			r.Error = fail(queue.CodeExpired, "not_after %s passed while the job waited", j.spec.NotAfter.UTC().Format(time.RFC3339))
			e.finish(hard, j, r, true)
			return next{}
		}
		if !slot.Period.Contains(now) || slot.Period.End.Sub(now) < periodGuard(slot.Period) {
			// The period turned (or is about to) while we waited: that slot
			// was never used. A call that leaves just before the boundary
			// could land in Braze's next period, uncounted there. The call
			// openTogether marked open does not start now: it is closed
			// first, so that whatever follows (a refusal, a shutdown) leaves
			// no open call behind.
			release()
			e.unopen(hard, j)
			d := slot.Period.End.Sub(now)
			if d <= 0 && turned { // the ledger granted an ended period twice: never spin
				d = minPause
			}
			turned = true
			if d > 0 && !w.sleep(ctx, d) {
				_ = msg.Nak()
				return next{}
			}
			if slot, err = e.reserve(ctx); err != nil {
				return e.putBack(j, "", err)
			}
		}
		if !first {
			// Another job may have created the pair or taken the
			// reservation over while this one waited to retry.
			if n, done := e.recheckPair(hard, j, release); done {
				return n
			}
		}
		// Count the attempt and open the call durably before it starts
		// (openTogether did for this one): from here until its answer is
		// recorded, the call is in doubt.
		if !j.opened {
			j.rec.Attempts++
			j.rec.Calling = j.rec.Attempts
			end := w.stage(StageJobRecord, true)
			rev, err := w.o.Records.PutJob(hard, j.rec, j.rev)
			end()
			if err != nil {
				j.rec.Attempts--
				j.rec.Calling = 0
				release()
				if errors.Is(err, queue.ErrConflict) && j.unread {
					return e.readAgain(hard, j)
				}
				if errors.Is(err, queue.ErrConflict) {
					return e.waitHeld(j)
				}
				return e.putBack(j, "job_record", err)
			}
			j.rev, j.unread = rev, false
		}
		j.opened = false

		g := e.settings.Load()
		req := braze.CreateSendIDRequest{CampaignID: j.spec.CampaignID, SendID: j.spec.SendID}
		callCtx, cancel := context.WithTimeout(hard, w.o.CallTimeout)
		end := w.stage(StageBraze, false)
		start := time.Now()
		resp, callErr := g.Sender.CreateSendID(callCtx, g.Key, req)
		latency := time.Since(start)
		end()
		cancel()
		o := decide(req, resp, callErr, hard.Err())
		e.observe(o, latency)
		if o.kind != outInterrupted {
			j.rec.Calling = 0 // answered; a call cut by shutdown stays open (in doubt)
		}

		// Record a creation before anything else: this is the crash window.
		// The pair record, the job's final record and the ledger's
		// settlement are written together; the result is published and the
		// message acked only once all three are done (finishCreated).
		var recorded sync.WaitGroup
		if o.kind == outCreated {
			recorded.Go(func() {
				defer w.stage(StagePostCall, false)()
				e.settle(hard, slot, o)
			})
		}
		if o.kind == outCreated && j.spec.SendID != "" {
			recorded.Go(func() {
				defer w.stage(StagePairCreated, true)()
				if err := w.o.Records.PairCreated(hard, e.group, j.spec.CampaignID, j.spec.SendID,
					queue.PairRecord{JobID: j.spec.ID, SendID: o.sendID, At: w.o.Clock.Now().UTC()}); err != nil {
					w.log.Error("pair record not written; a redelivery could send this pair again",
						zap.String("job_id", j.spec.ID), zap.Error(err))
				}
			})
		}
		if o.kind != outCreated {
			end = w.stage(StagePostCall, false)
			e.settle(hard, slot, o)
			end()
		}

		switch o.kind {
		case outCreated:
			r := j.result(queue.StatusCreated)
			r.SendID = o.sendID
			e.finishCreated(hard, j, r, &recorded, zap.Duration("braze_latency", latency))
			return next{}
		case outRejected:
			e.dropPair(hard, j)
			r := j.result(queue.StatusFailed)
			r.Error = &queue.ResultError{Code: queue.CodeBrazeRejected, Message: o.err.Message, HTTPStatus: o.err.StatusCode}
			e.finish(hard, j, r, true, zap.Duration("braze_latency", latency))
			return next{}
		case outRateLimited:
			e.saveRecord(hard, j)
			_ = msg.Nak()
			return next{pauseUntil: o.err.ResetAt(w.o.Clock.Now().Add(time.Minute)), reason: "rate_limited"}
		case outConfigFault:
			e.saveRecord(hard, j)
			_ = msg.Nak()
			w.o.Metrics.ConfigFaults.WithLabelValues(e.group).Inc()
			e.lastFault.Store(&o.err.Message)
			w.log.Error("BRAZE REJECTED THE CONFIGURATION: check the app group's API key, its sends.id.create permission and the REST URL; the lane is paused and no job is failed",
				zap.String("app_group", e.group), zap.Int("http_status", o.err.StatusCode), zap.String("braze_message", o.err.Message))
			return next{reason: "config_fault"}
		case outInterrupted:
			_ = msg.Nak()
			w.log.Warn("call interrupted by shutdown; job put back", zap.String("job_id", j.spec.ID), zap.String("app_group", e.group))
			return next{}
		}

		// outRetry: only these answers use up max_attempts.
		j.rec.Failures++
		if j.rec.Failures >= w.o.MaxAttempts {
			r := j.result(queue.StatusFailed)
			r.Error = &queue.ResultError{Code: queue.CodeRetriesExhausted,
				Message: "gave up after " + strconv.Itoa(j.rec.Failures) + " retryable failures: " + o.err.Error(), HTTPStatus: o.err.StatusCode}
			if err := w.o.Publisher.DeadLetter(hard, e.group, j.spec, r.Error.Message, j.seq); err != nil {
				e.saveRecord(hard, j)
				return e.putBack(j, "dead_letter", err)
			}
			w.o.Metrics.DeadLettered.WithLabelValues(e.group).Inc()
			e.dropPair(hard, j)
			e.finish(hard, j, r, true)
			return next{}
		}
		e.saveRecord(hard, j)
		d := backoff(j.rec.Failures, w.o.RetryBackoff, w.o.RetryMax, w.jitter)
		w.log.Info("braze call failed; retrying", zap.String("job_id", j.spec.ID), zap.String("app_group", e.group),
			zap.Int("attempts", j.rec.Attempts), zap.Duration("backoff", d), zap.Error(o.err))
		if !w.sleep(ctx, d) {
			_ = msg.Nak()
			return next{}
		}
		if slot, err = e.reserve(ctx); err != nil {
			return e.putBack(j, "", err)
		}
	}
}

// putBack returns the job to the FIFO head. An exhausted ledger pauses the
// lane; other errors are infrastructure trouble worth a short pause.
func (e *executor) putBack(j *job, stage string, err error) next {
	var ex *quota.Exhausted
	if errors.As(err, &ex) {
		e.granted = false
		_ = j.msg.Nak()
		return next{pauseUntil: ex.Until, reason: "quota"}
	}
	_ = j.msg.Nak()
	if errors.Is(err, context.Canceled) {
		return next{}
	}
	e.w.log.Warn("job put back after an infrastructure error", zap.String("job_id", j.spec.ID), zap.String("app_group", e.group),
		zap.String("stage", stage), zap.Error(err))
	e.w.o.Metrics.InfraFailures.WithLabelValues(stage).Inc()
	return next{pauseUntil: e.w.o.Clock.Now().Add(time.Second), reason: "infra"}
}

// finish stores a final result (when store), publishes it and acks.
func (e *executor) finish(ctx context.Context, j *job, r queue.Result, store bool, extra ...zap.Field) {
	r.At = e.w.o.Clock.Now().UTC()
	if store {
		e.storeFinal(ctx, j, r)
	}
	e.answer(ctx, j, r, extra...)
}

// finishCreated finishes a job whose call created its pair: its final
// record is written alongside the pair record and the ledger's settlement
// (recorded), and the result is published and the message acked only once
// all three are done, so that a crash before them is answered from the
// records, never with a second, different answer.
func (e *executor) finishCreated(ctx context.Context, j *job, r queue.Result, recorded *sync.WaitGroup, extra ...zap.Field) {
	r.At = e.w.o.Clock.Now().UTC()
	recorded.Go(func() { e.storeFinal(ctx, j, r) })
	recorded.Wait()
	e.answer(ctx, j, r, extra...)
}

// storeFinal writes r as the job's final record.
func (e *executor) storeFinal(ctx context.Context, j *job, r queue.Result) {
	w := e.w
	rec := j.rec
	rec.Final = &r
	end := w.stage(StageFinalRecord, true)
	if _, err := w.o.Records.PutJob(ctx, rec, j.rev); err != nil {
		w.log.Warn("final job record not written", zap.String("job_id", r.ID), zap.Error(err))
	}
	end()
}

// answer publishes r and acks the job's message.
func (e *executor) answer(ctx context.Context, j *job, r queue.Result, extra ...zap.Field) {
	w := e.w
	end := w.stage(StageResultPublish, false)
	err := w.o.Publisher.Result(ctx, j.spec.ReplyTo, r)
	end()
	if err != nil {
		// Redelivery answers from the stored record.
		w.log.Warn("result not published; job will be redelivered", zap.String("job_id", r.ID), zap.Error(err))
		w.o.Metrics.InfraFailures.WithLabelValues("publish_result").Inc()
		_ = j.msg.NakWithDelay(time.Second)
		return
	}
	// The job leaves ack-pending and the lane's held count together, so a
	// forecast never sees it twice or not at all.
	// A plain ack: a redelivery after a lost ack is answered from the record.
	end = w.stage(StageAck, false)
	e.fc.drop(func() { err = j.msg.Ack() })
	end()
	if err != nil {
		w.log.Warn("ack failed; a redelivery will answer from the record", zap.String("job_id", r.ID), zap.Error(err))
	}
	w.o.Metrics.Jobs.WithLabelValues(e.group, r.Status).Inc()
	fields := append([]zap.Field{zap.String("job_id", r.ID), zap.String("app_group", e.group), zap.String("status", r.Status),
		zap.Int("attempts", r.Attempts), zap.Bool("duplicate", r.Duplicate), zap.String("send_id", r.SendID)}, extra...)
	if r.Error != nil {
		fields = append(fields, zap.String("code", r.Error.Code), zap.String("error", r.Error.Message))
	}
	w.log.Info("job finished", fields...)
}

func (e *executor) observe(o outcome, latency time.Duration) {
	m := e.w.o.Metrics
	code := 201
	if o.err != nil {
		code = o.err.StatusCode
	}
	m.Requests.WithLabelValues(e.group, strconv.Itoa(code)).Inc()
	m.Latency.WithLabelValues(e.group).Observe(latency.Seconds())
}

// keepAlive tells the server we are still working on msg, every interval
// (a third of the lane's AckWait), until stopped.
func keepAlive(ctx context.Context, msg jetstream.Msg, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(max(interval, 100*time.Millisecond))
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
