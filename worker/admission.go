package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/queue"
)

// admission answers bad, duplicate and hopeless jobs at once and admits the
// rest to their group's FIFO, with a deferred notice when they will run
// after the current quota period.
type admission struct {
	w    *Worker
	cons jetstream.Consumer
}

func (a *admission) run(ctx, hard context.Context) {
	w := a.w
	defer w.setAdmissionRunning(false)
	for ctx.Err() == nil {
		it, err := a.cons.Messages(jetstream.PullMaxMessages(64), jetstream.PullExpiry(10*time.Second))
		if err != nil {
			w.log.Warn("admission cannot consume; retrying", zap.Error(err))
			w.o.Metrics.InfraFailures.WithLabelValues("admission_consume").Inc()
			w.sleep(ctx, time.Second)
			continue
		}
		w.setAdmissionRunning(true)
		stop := context.AfterFunc(ctx, it.Stop)
		for {
			msg, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					w.log.Warn("admission fetch failed", zap.Error(err))
				}
				break
			}
			a.handle(hard, msg)
		}
		stop()
		it.Stop()
	}
}

// answerTo publishes a final answer to the job's reply subject and acks.
func (a *admission) answer(ctx context.Context, msg jetstream.Msg, dest string, r queue.Result) {
	w := a.w
	r.At = w.o.Clock.Now().UTC()
	if err := w.o.Publisher.Result(ctx, dest, r); err != nil {
		w.log.Warn("admission cannot publish result; job will be redelivered", zap.String("job_id", r.ID), zap.Error(err))
		w.o.Metrics.InfraFailures.WithLabelValues("publish_result").Inc()
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err := msg.Ack(); err != nil {
		w.log.Warn("admission ack failed", zap.String("job_id", r.ID), zap.Error(err))
	}
	w.o.Metrics.Jobs.WithLabelValues(r.AppGroup, r.Status).Inc()
	fields := []zap.Field{zap.String("job_id", r.ID), zap.String("app_group", r.AppGroup), zap.String("status", r.Status),
		zap.Int("attempts", r.Attempts), zap.Bool("duplicate", r.Duplicate), zap.String("reply_to", dest)}
	if r.Error != nil {
		w.log.Info("job refused", append(fields, zap.String("code", r.Error.Code), zap.String("error", r.Error.Message))...)
		return
	}
	w.log.Info("job answered", fields...)
}

func (a *admission) retryLater(msg jetstream.Msg, stage, jobID string, err error) {
	a.w.log.Warn("admission deferred by an infrastructure error", zap.String("stage", stage), zap.String("job_id", jobID), zap.Error(err))
	a.w.o.Metrics.InfraFailures.WithLabelValues(stage).Inc()
	_ = msg.NakWithDelay(time.Second)
}

func fail(code, format string, args ...any) *queue.ResultError {
	return &queue.ResultError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (a *admission) handle(ctx context.Context, msg jetstream.Msg) {
	w := a.w
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("message without JetStream metadata", zap.Error(err))
		_ = msg.Term()
		return
	}
	group, err := w.o.Subjects.GroupOf(msg.Subject())
	if err != nil {
		group = queue.DefaultGroup
	}
	job, jobErr := queue.DecodeJob(msg.Data(), w.o.MaxJobBytes)
	id := job.ID
	if id == "" {
		if h := msg.Headers().Get(queue.HeaderMsgID); queue.ValidID(h) {
			id = h
		} else {
			id = queue.Stream + "-" + strconv.FormatUint(meta.Sequence.Stream, 10)
		}
	}
	res := queue.Result{ID: id, AppGroup: group, CampaignID: job.CampaignID, SendID: job.SendID, Meta: job.Meta, Status: queue.StatusFailed}

	// Where answers go: reply_to, else the Reply-To header (also when the
	// body cannot be parsed), else <prefix>.results.<group>.
	dest := w.o.Subjects.Results(group)
	reply := job.ReplyTo
	if reply == "" {
		reply = msg.Headers().Get(queue.HeaderReplyTo)
	}
	var replyErr error
	if reply != "" {
		if replyErr = w.rules.Check(reply); replyErr == nil {
			dest = reply
		}
	}
	if jobErr != nil {
		var je *queue.JobError
		errors.As(jobErr, &je)
		res.Error = &queue.ResultError{Code: je.Code, Message: je.Message}
		a.answer(ctx, msg, dest, res)
		return
	}
	if replyErr != nil {
		res.Error = fail(queue.CodeInvalidReplyTo, "%v", replyErr)
		a.answer(ctx, msg, dest, res)
		return
	}
	if err := braze.ValidateCampaignID(job.CampaignID); err != nil {
		res.Error = fail(queue.CodeInvalidJob, "campaign_id %v", err)
		a.answer(ctx, msg, dest, res)
		return
	}
	if job.SendID != "" {
		if err := braze.ValidateSendID(job.SendID); err != nil {
			res.Error = fail(queue.CodeInvalidJob, "send_id %v", err)
			a.answer(ctx, msg, dest, res)
			return
		}
	}
	l := w.lane(group)
	if l == nil {
		res.Error = fail(queue.CodeUnknownAppGroup, "app group %q is not configured", group)
		a.answer(ctx, msg, dest, res)
		return
	}
	now := w.o.Clock.Now()
	if job.NotAfter != nil && !now.Before(*job.NotAfter) {
		res.Status, res.Error = queue.StatusExpired, fail(queue.CodeExpired, "not_after %s passed before admission", job.NotAfter.UTC().Format(time.RFC3339))
		a.answer(ctx, msg, dest, res)
		return
	}

	// Duplicates are answered from stored records, without spending quota.
	rec, pair, paired, stage, err := w.records(ctx, id, group, job)
	if err != nil {
		a.retryLater(msg, stage, id, err)
		return
	}
	if rec.Final != nil {
		stored := *rec.Final
		stored.Duplicate, stored.Meta = true, job.Meta
		a.answer(ctx, msg, dest, stored)
		return
	}
	if paired {
		res.Status, res.SendID, res.Duplicate = queue.StatusCreated, pair.SendID, true
		a.answer(ctx, msg, dest, res)
		return
	}

	// Forecast, then admit.
	position, eta, per, err := l.forecast(ctx)
	if err != nil {
		a.retryLater(msg, "forecast", id, err)
		return
	}
	if job.NotAfter != nil && eta.After(*job.NotAfter) {
		res.Status, res.Error = queue.StatusExpired, fail(queue.CodeExpired, "forecast to run at %s, after not_after %s",
			eta.UTC().Format(time.RFC3339), job.NotAfter.UTC().Format(time.RFC3339))
		a.answer(ctx, msg, dest, res)
		return
	}
	job.ID, job.ReplyTo = id, dest
	if _, err := w.o.Publisher.Ready(ctx, group, job, id+"@"+strconv.FormatUint(meta.Sequence.Stream, 10)); err != nil {
		a.retryLater(msg, "admit", id, err)
		return
	}
	l.admitted() // counts the job into the forecast snapshot
	w.o.Metrics.Admitted.WithLabelValues(group).Inc()
	if !eta.Before(per.End) {
		pol, _ := w.o.Policies.Get(group)
		until := pol.PeriodAt(eta).Start.UTC()
		etaUTC := eta.UTC()
		notice := res
		notice.Status, notice.Error = queue.StatusDeferred, nil
		notice.DeferredUntil, notice.ETA, notice.Position = &until, &etaUTC, &position
		notice.At = now.UTC()
		if err := w.o.Publisher.Result(ctx, dest, notice); err != nil {
			// The job is admitted; a lost notice is not worth a redelivery.
			w.log.Warn("deferred notice not published", zap.String("job_id", id), zap.Error(err))
		} else {
			w.o.Metrics.Deferred.WithLabelValues(group).Inc()
		}
		w.log.Info("job deferred", zap.String("job_id", id), zap.String("app_group", group), zap.Time("deferred_until", until),
			zap.Time("eta", etaUTC), zap.Int("position", position))
	}
	// A plain ack: after a lost ack the redelivery re-admits under the same
	// Nats-Msg-Id, and the stream drops it.
	if err := msg.Ack(); err != nil {
		w.log.Warn("admission ack failed", zap.String("job_id", id), zap.Error(err))
	}
	w.log.Debug("job admitted", zap.String("job_id", id), zap.String("app_group", group), zap.Int("position", position))
}

// records reads a job's record and, when it names a send_id, its pair's
// record, in parallel. stage names what failed.
func (w *Worker) records(ctx context.Context, id, group string, job queue.Job) (queue.JobRecord, queue.PairRecord, bool, string, error) {
	var (
		pair    queue.PairRecord
		paired  bool
		pairErr error
		wg      sync.WaitGroup
	)
	if job.SendID != "" {
		wg.Go(func() { pair, paired, pairErr = w.o.Records.Pair(ctx, group, job.CampaignID, job.SendID) })
	}
	rec, _, err := w.o.Records.Job(ctx, id)
	wg.Wait()
	switch {
	case err != nil:
		return rec, pair, false, "job_record", err
	case pairErr != nil:
		return rec, pair, false, "pair_record", pairErr
	}
	return rec, pair, paired, "", nil
}
