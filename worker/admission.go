package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
)

// admission answers bad, duplicate and hopeless jobs at once and admits the
// rest to their group's FIFO, with a deferred notice when they will run
// after the current quota period.
type admission struct {
	w    *Worker
	cons jetstream.Consumer
	// batch reads a batch's records in one request per bucket (run sets
	// it). After a failure (a server without batch gets answers only after
	// a timeout) admission reads job by job until batchAgain.
	batch      *queue.BatchReader
	batchAgain time.Time
}

// batchPause is how long admission reads job by job after a batch read
// failed.
const batchPause = time.Minute

func (a *admission) run(ctx, hard context.Context) {
	w := a.w
	defer w.setAdmissionRunning(false)
	if a.batch == nil {
		a.batch = queue.NewBatchReader(w.o.NC, w.o.Records)
	}
	msgs := make(chan jetstream.Msg, 2*maxBatch)
	deleted := w.admLost()
	// Admitted batches wait for their publications' acks here while the
	// next batch is read and decided: publications keep their order on the
	// connection, and a job is still acked only after its own.
	confirms := make(chan []*pending, confirmWindow)
	var confirmer sync.WaitGroup
	confirmer.Go(func() {
		for admitted := range confirms {
			a.confirmBatch(hard, admitted)
		}
	})
	defer func() {
		close(confirms)
		confirmer.Wait()
	}()
	for ctx.Err() == nil {
		// lost hears this Consume's terminal errors: a deleted consumer
		// stops it, lost heartbeats may mean the consumer is gone.
		lost := make(chan error, 1)
		cc, err := a.cons.Consume(func(m jetstream.Msg) {
			select {
			case msgs <- m:
			case <-ctx.Done():
				_ = m.Nak()
			}
		}, jetstream.PullMaxMessages(maxBatch), jetstream.PullPriorityGroup(queue.LanePriorityGroup),
			// Pull again well within the pin's TTL, also when idle: this
			// replica keeps admitting until it stops.
			jetstream.PullExpiry(max(w.o.LaneFailover/2, time.Second)),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				if consumerLost(err) {
					select {
					case lost <- err:
					default:
					}
				}
			}))
		if err != nil {
			if consumerLost(err) {
				a.restore(ctx, err)
				continue
			}
			w.log.Warn("admission cannot consume; retrying", zap.Error(err))
			w.o.Metrics.InfraFailures.WithLabelValues("admission_consume").Inc()
			w.sleep(ctx, time.Second)
			continue
		}
		w.setAdmissionRunning(true)
		var why error
		for why == nil {
			var batch []jetstream.Msg
			select {
			case m := <-msgs:
				batch = append(batch, m)
			case why = <-lost:
			case why = <-deleted:
			case <-ctx.Done():
			}
			if batch == nil {
				break
			}
		fill:
			for len(batch) < maxBatch {
				select {
				case m := <-msgs:
					batch = append(batch, m)
				default:
					break fill
				}
			}
			if admitted := a.handleBatch(hard, batch); len(admitted) > 0 {
				confirms <- admitted
			}
		}
		cc.Stop()
		<-cc.Closed()
		if why != nil {
			a.restore(ctx, why)
		}
	}
	for { // hand back what was delivered but not handled
		select {
		case m := <-msgs:
			_ = m.Nak()
		default:
			return
		}
	}
}

// restore brings the admission consumer back (see Worker.restore); the
// messages already delivered stay queued and are handled after it.
func (a *admission) restore(ctx context.Context, why error) {
	if c, err := a.w.restoreAdmission(ctx, why); err == nil {
		a.cons = c
	}
	// A deletion announced and also seen by the pull is one deletion.
	select {
	case <-a.w.admLost():
	default:
	}
}

// maxBatch bounds how many jobs admission handles together.
const maxBatch = 256

// confirmWindow bounds how many admitted batches may wait for their
// publications' acks while admission reads the next ones (the admission
// consumer's MaxAckPending bounds the jobs in flight as well).
const confirmWindow = 4

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
	w.o.Metrics.Jobs.WithLabelValues(w.groupLabel(r.AppGroup), r.Status).Inc()
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

// pending is one job of a batch on its way through admission.
type pending struct {
	msg    jetstream.Msg
	seq    uint64
	group  string
	job    queue.Job
	res    queue.Result
	dest   string
	lane   *lane
	rec    queue.JobRecord
	pair   queue.PairRecord
	paired bool
	stage  string
	err    error
	// set when admitted
	ack        jetstream.PubAckFuture
	notice     *queue.Result
	confirmed  bool                 // the publication is acknowledged
	noticeSent *queue.PendingResult // the notice on its way
	noticeErr  error
}

// handleBatch answers or admits a batch of jobs: bad input is answered at
// once; the records of the rest are read together (readRecords), and the stale
// forecast snapshots of their groups refreshed alongside; then, in order,
// each is answered from its record or admitted with an asynchronous
// publication. It returns the admitted jobs, for confirmBatch: a job is
// acked only once its publication is acknowledged.
func (a *admission) handleBatch(ctx context.Context, batch []jetstream.Msg) []*pending {
	var todo []*pending
	for _, m := range batch {
		if p := a.prepare(ctx, m); p != nil {
			todo = append(todo, p)
		}
	}
	var wg sync.WaitGroup
	end := a.w.stage(StageAdmissionRecords, true)
	a.refreshForecasts(ctx, todo, &wg)
	a.readRecords(ctx, todo)
	wg.Wait()
	end()
	var admitted []*pending
	for _, p := range todo {
		if a.decide(ctx, p) {
			admitted = append(admitted, p)
		}
	}
	return admitted
}

// readRecords reads the job and pair records of todo: all in one request
// per bucket, or, if that fails, each job's in parallel.
func (a *admission) readRecords(ctx context.Context, todo []*pending) {
	if len(todo) == 0 {
		return
	}
	keys := make([]queue.RecordKey, len(todo))
	for i, p := range todo {
		keys[i] = queue.RecordKey{Group: p.group, ID: p.res.ID, CampaignID: p.job.CampaignID, SendID: p.job.SendID}
	}
	now := a.w.o.Clock.Now()
	var (
		got []queue.RecordsOf
		err = errBatchPaused
	)
	if !now.Before(a.batchAgain) {
		got, err = a.batch.Read(ctx, keys)
	}
	if err == nil {
		for i, p := range todo {
			r := got[i]
			p.rec, p.pair = r.Job, r.Pair
			// A reservation (calling) is the lane's business: admit.
			p.paired = r.PairRev != 0 && r.Pair.Created()
			switch {
			case r.JobErr != nil:
				p.stage, p.err = "job_record", r.JobErr
			case r.PairErr != nil:
				p.stage, p.err = "pair_record", r.PairErr
			}
		}
		return
	}
	if !errors.Is(err, errBatchPaused) {
		a.batchAgain = now.Add(batchPause)
		a.w.log.Warn("admission reads records one job at a time for a while: a batch read failed", zap.Error(err), zap.Duration("for", batchPause))
	}
	var wg sync.WaitGroup
	for _, p := range todo {
		wg.Go(func() { p.rec, p.pair, p.paired, p.stage, p.err = a.w.records(ctx, p.res.ID, p.group, p.job) })
	}
	wg.Wait()
}

// errBatchPaused: batch reads are paused after a failure.
var errBatchPaused = errors.New("batch reads paused")

// refreshForecasts refreshes, on wg, the forecast snapshots of the groups
// of todo that decide would otherwise refresh one after another. Errors
// are left for decide, which refreshes again and answers them.
func (a *admission) refreshForecasts(ctx context.Context, todo []*pending, wg *sync.WaitGroup) {
	now := a.w.o.Clock.Now()
	seen := make(map[*lane]bool)
	for _, p := range todo {
		l := p.lane
		if seen[l] {
			continue
		}
		seen[l] = true
		pol, _ := a.w.o.Policies.Get(l.group)
		if l.fc.stale(now, pol.PeriodAt(now)) {
			wg.Go(func() { _, _, _, _ = l.forecast(ctx) })
		}
	}
}

// prepare validates one job and answers it if it is bad; it returns the
// job if it needs its records read.
func (a *admission) prepare(ctx context.Context, msg jetstream.Msg) *pending {
	w := a.w
	meta, err := msg.Metadata()
	if err != nil {
		w.log.Error("message without JetStream metadata", zap.Error(err))
		_ = msg.Term()
		return nil
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
			id = w.o.Publisher.IDs().Job(meta.Sequence.Stream)
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
		if replyErr = w.replyRules(group).CheckFor(group, reply); replyErr == nil {
			dest = reply
		}
	}
	refuse := func(e *queue.ResultError) *pending {
		res.Error = e
		a.answer(ctx, msg, dest, res)
		return nil
	}
	if jobErr != nil {
		var je *queue.JobError
		errors.As(jobErr, &je)
		return refuse(&queue.ResultError{Code: je.Code, Message: je.Message})
	}
	if replyErr != nil {
		return refuse(fail(queue.CodeInvalidReplyTo, "%v", replyErr))
	}
	if e := checkFields(job); e != nil {
		return refuse(e)
	}
	l := w.lane(group)
	if l == nil {
		return refuse(fail(queue.CodeUnknownAppGroup, "app group %q is not configured", group))
	}
	if job.NotAfter != nil && !w.o.Clock.Now().Before(*job.NotAfter) {
		res.Status = queue.StatusExpired
		return refuse(fail(queue.CodeExpired, "not_after %s passed before admission", job.NotAfter.UTC().Format(time.RFC3339)))
	}
	return &pending{msg: msg, seq: meta.Sequence.Stream, group: group, job: job, res: res, dest: dest, lane: l}
}

// decide answers a duplicate or hopeless job, or admits it; true when an
// admission is under way.
func (a *admission) decide(ctx context.Context, p *pending) bool {
	w := a.w
	if p.err != nil {
		a.retryLater(p.msg, p.stage, p.res.ID, p.err)
		return false
	}
	// Duplicates are answered from stored records, without spending quota.
	if p.rec.Final != nil {
		stored := *p.rec.Final
		stored.Duplicate, stored.Meta = true, p.job.Meta
		a.answer(ctx, p.msg, p.dest, stored)
		return false
	}
	res := p.res
	if p.paired {
		res.Status, res.SendID, res.Duplicate = queue.StatusCreated, p.pair.SendID, true
		a.answer(ctx, p.msg, p.dest, res)
		return false
	}
	end := w.stage(StageAdmissionForecast, false)
	position, eta, per, err := p.lane.forecast(ctx)
	end()
	if err != nil {
		a.retryLater(p.msg, "forecast", p.res.ID, err)
		return false
	}
	if full := backlogFull(p.lane, position); full != nil {
		res.Error = full
		a.answer(ctx, p.msg, p.dest, res)
		return false
	}
	if p.job.NotAfter != nil && eta.After(*p.job.NotAfter) {
		res.Status, res.Error = queue.StatusExpired, fail(queue.CodeExpired, "forecast to run at %s, after not_after %s",
			eta.UTC().Format(time.RFC3339), p.job.NotAfter.UTC().Format(time.RFC3339))
		a.answer(ctx, p.msg, p.dest, res)
		return false
	}
	job := p.job
	job.ID, job.ReplyTo = p.res.ID, p.dest
	if p.ack, err = w.o.Publisher.ReadyAsync(p.group, job, w.o.Publisher.IDs().Ready(p.group, job.ID, p.seq)); err != nil {
		a.retryLater(p.msg, "admit", job.ID, err)
		return false
	}
	p.lane.admitted() // counts the job into the forecast snapshot
	if !eta.Before(per.End) {
		pol, _ := w.o.Policies.Get(p.group)
		until, etaUTC := pol.PeriodAt(eta).Start.UTC(), eta.UTC()
		notice := res
		notice.Status, notice.Error = queue.StatusDeferred, nil
		notice.DeferredUntil, notice.ETA, notice.Position = &until, &etaUTC, &position
		notice.At = w.o.Clock.Now().UTC()
		p.notice = &notice
	}
	return true
}

// confirmBatch confirms a batch's admissions in order (see confirm): their
// notices are published as their publications are acknowledged, and each
// job is acked once its notice is stored (or failed), so that a crash never
// leaves an acked job without its notice, while the notices of a batch
// travel together.
func (a *admission) confirmBatch(ctx context.Context, admitted []*pending) {
	for _, p := range admitted {
		a.confirm(ctx, p)
	}
	for _, p := range admitted {
		if p.confirmed {
			a.finish(ctx, p)
		}
	}
}

// confirm waits for an admission's publication and starts publishing its
// notice; confirmed says the job was admitted. A plain ack follows (finish):
// after a lost ack the redelivery re-admits under the same Nats-Msg-Id, and
// the stream drops it.
func (a *admission) confirm(ctx context.Context, p *pending) {
	w := a.w
	end := w.stage(StageAdmissionConfirm, true)
	select {
	case ack := <-p.ack.Ok():
		end()
		// A duplicate ack must be this job's own earlier admission.
		if err := w.o.Publisher.ConfirmReady(ctx, ack, p.ack.Msg(), p.seq); err != nil {
			a.refuseFull(ctx, p, err)
			return
		}
	case err := <-p.ack.Err():
		a.refuseFull(ctx, p, err)
		return
	case <-ctx.Done():
		_ = p.msg.Nak()
		return
	}
	w.o.Metrics.Admitted.WithLabelValues(p.group).Inc()
	w.gauges.backlogMoved(p.group, 1)
	p.confirmed = true
	if n := p.notice; n != nil {
		p.noticeSent, p.noticeErr = w.o.Publisher.ResultAsync(p.dest, *n)
	}
}

// finish waits for an admitted job's notice, if any, and acks the job.
func (a *admission) finish(ctx context.Context, p *pending) {
	w := a.w
	if n := p.notice; n != nil {
		err := p.noticeErr
		if err == nil {
			err = p.noticeSent.Wait(ctx)
		}
		if err != nil {
			// The job is admitted; a lost notice is not worth a redelivery.
			w.log.Warn("deferred notice not published", zap.String("job_id", n.ID), zap.Error(err))
		} else {
			w.o.Metrics.Deferred.WithLabelValues(p.group).Inc()
		}
		w.log.Info("job deferred", zap.String("job_id", n.ID), zap.String("app_group", p.group), zap.Time("deferred_until", *n.DeferredUntil),
			zap.Time("eta", *n.ETA), zap.Int("position", *n.Position))
	}
	end := w.stage(StageAdmissionAck, false)
	if err := p.msg.Ack(); err != nil {
		w.log.Warn("admission ack failed", zap.String("job_id", p.res.ID), zap.Error(err))
	}
	end()
	w.log.Debug("job admitted", zap.String("job_id", p.res.ID), zap.String("app_group", p.group))
}

// records reads a job's record in its group and, when it names a send_id,
// its pair's record, in parallel; paired means the pair was created. stage
// names what failed.
func (w *Worker) records(ctx context.Context, id, group string, job queue.Job) (queue.JobRecord, queue.PairRecord, bool, string, error) {
	var (
		pair    queue.PairRecord
		paired  bool
		pairErr error
		wg      sync.WaitGroup
	)
	if job.SendID != "" {
		wg.Go(func() {
			var rev uint64
			pair, rev, pairErr = w.o.Records.Pair(ctx, group, job.CampaignID, job.SendID)
			// A reservation (calling) is the lane's business: admit.
			paired = rev != 0 && pair.Created()
		})
	}
	rec, _, err := w.o.Records.Job(ctx, group, id)
	wg.Wait()
	switch {
	case err != nil:
		return rec, pair, false, "job_record", err
	case pairErr != nil:
		return rec, pair, false, "pair_record", pairErr
	}
	return rec, pair, paired, "", nil
}
