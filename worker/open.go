package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// open takes what a fetched job's first call needs before it may leave: a
// ledger slot with the group's token, the pair's reservation and the job
// record. done is true when the job was answered or put back; otherwise the
// caller owns slot.
//
// A first delivery on a lane whose last reservation was granted takes the
// three at once (openTogether): one wait instead of three. Otherwise — the
// lane's first job after a start or a refusal, no token at hand, a job
// about to expire or close to its period's end, or a redelivery, whose
// records must be read first — the slot comes first and the records after
// it (claimFirst, claim), so that a refusal never touches them.
func (e *executor) open(ctx, hard context.Context, j *job, delivered uint64) (quota.Slot, next, bool) {
	if delivered == 1 && e.granted && e.roomToCall(j) {
		slot, n, done, paced := e.openTogether(ctx, hard, j)
		if paced == nil {
			return slot, n, done
		}
		// Another replica emptied the group's bucket: the records were
		// undone, and the token is waited for before they are taken again.
		if !e.w.sleep(ctx, paced.Until.Sub(e.w.o.Clock.Now())) {
			return slot, e.refused(ctx, j, ctx.Err()), true
		}
	}
	end := e.w.stage(StageReserve, false)
	slot, err := e.reserve(ctx)
	end()
	if err != nil {
		return slot, e.refused(ctx, j, err), true
	}
	e.granted = true
	if n, done := e.claimFirst(hard, j, delivered, func() { e.release(hard, slot) }); done {
		return slot, n, true
	}
	return slot, next{}, false
}

// roomToCall reports whether the job can be called now: it has not
// expired, the group's pacer has a token as this replica knows its bucket,
// and its period is not about to end (see periodGuard).
func (e *executor) roomToCall(j *job) bool {
	w := e.w
	now := w.o.Clock.Now()
	if j.spec.NotAfter != nil && !now.Before(*j.spec.NotAfter) {
		return false
	}
	if w.o.Pacer.Tokens(e.group) < 1 {
		return false
	}
	pol, ok := w.o.Policies.Get(e.group)
	if !ok {
		return false
	}
	per := pol.PeriodAt(now)
	return per.End.Sub(now) >= 2*periodGuard(per)
}

// openTogether reserves the slot, the pair and the job record (the open
// call's marker: Attempts and Calling 1) concurrently; the records are
// created as new keys with compare-and-swap, so a record another message
// wrote meanwhile fails its write, as in claimFirst. The reservation does
// not wait: the lane's token is there (roomToCall), and a bucket another
// replica emptied is reported as paced. When any of the three fails, the
// others are undone: on paced the caller waits for the token and takes
// them in turn; otherwise the job is put back — an id or a pair found taken
// is read on the redelivery (claim), a refused slot pauses the lane as in
// open. A crash while the three are taken (one round trip) or before a
// failure's undo leaves the mark of a call that never started: the
// redelivery reports the job in doubt — the safe reading — and never calls
// twice unseen.
func (e *executor) openTogether(ctx, hard context.Context, j *job) (_ quota.Slot, _ next, done bool, paced *quota.Paced) {
	w := e.w
	rec := queue.JobRecord{ID: j.spec.ID, AppGroup: e.group, Owner: j.seq, Attempts: 1, Calling: 1}
	var (
		slot                     quota.Slot
		slotErr, pairErr, jobErr error
		pairRev, jobRev          uint64
		wg                       sync.WaitGroup
	)
	wg.Go(func() {
		defer w.stage(StageReserve, false)()
		slot, slotErr = e.reserveOnce(ctx)
	})
	if j.spec.SendID != "" {
		wg.Go(func() {
			defer w.stage(StagePairReserve, true)()
			res := queue.PairRecord{State: queue.PairCalling, JobID: j.spec.ID, Seq: j.seq, At: w.o.Clock.Now().UTC()}
			pairRev, pairErr = w.o.Records.PutPair(hard, e.group, j.spec.CampaignID, j.spec.SendID, res, 0)
		})
	}
	end := w.stage(StageJobRecord, true)
	jobRev, jobErr = w.o.Records.PutJob(hard, rec, 0)
	end()
	wg.Wait()
	if slotErr == nil && pairErr == nil && jobErr == nil {
		j.rec, j.rev, j.pairRev, j.opened = rec, jobRev, pairRev, true
		return slot, next{}, false, nil
	}

	// Undo what was taken, then put the job back.
	var undo sync.WaitGroup
	if slotErr == nil {
		undo.Go(func() { e.release(hard, slot) })
	}
	if pairErr == nil && pairRev != 0 {
		undo.Go(func() {
			j.pairRev = pairRev
			e.dropPair(hard, j)
		})
	}
	if jobErr == nil {
		undo.Go(func() {
			if err := w.o.Records.DropJob(hard, e.group, j.spec.ID, jobRev); err != nil {
				w.log.Warn("job record of a call that never started not removed; a redelivery reports the job in doubt",
					zap.String("job_id", j.spec.ID), zap.String("app_group", e.group), zap.Error(err))
			}
		})
	}
	undo.Wait()
	if slotErr != nil && !errors.As(slotErr, &paced) {
		return slot, e.refused(ctx, j, slotErr), true, nil
	}
	switch {
	case errors.Is(jobErr, queue.ErrConflict) || errors.Is(pairErr, queue.ErrConflict):
		// The id or the pair is taken: the redelivery reads the records.
		_ = j.msg.Nak()
		return slot, next{}, true, nil
	case jobErr != nil:
		return slot, e.putBack(j, "job_record", jobErr), true, nil
	case pairErr != nil:
		return slot, e.putBack(j, "pair_record", pairErr), true, nil
	}
	return slot, next{}, false, paced
}

// refused puts back a job for which the lane got no slot: an exhausted
// ledger pauses the lane until the period's end (at most maxQuotaPause, to
// look again: another replica's momentary probe, a released slot or a
// raised cap may free one); other trouble waits a second.
func (e *executor) refused(ctx context.Context, j *job, err error) next {
	w := e.w
	e.granted = false
	_ = j.msg.Nak()
	var ex *quota.Exhausted
	if errors.As(err, &ex) {
		return next{pauseUntil: earliest(ex.Until, w.o.Clock.Now().Add(maxQuotaPause)), reason: "quota"}
	}
	if ctx.Err() == nil {
		w.log.Warn("lane cannot take a job; retrying", zap.String("app_group", e.group), zap.Error(err))
		w.o.Metrics.InfraFailures.WithLabelValues("lane_acquire").Inc()
		w.sleep(ctx, time.Second)
	}
	return next{}
}

// release gives an unused slot back to the ledger.
func (e *executor) release(ctx context.Context, slot quota.Slot) {
	if err := e.w.o.Ledger.Release(ctx, slot); err != nil {
		e.w.log.Warn("slot not released", zap.String("app_group", e.group), zap.Error(err))
	}
}

// unopen closes the call openTogether marked open in the job record, when
// it will not start with the slot it was opened with. A record that cannot
// be written leaves the call open: a redelivery then reports the job in
// doubt, the safe reading.
func (e *executor) unopen(hard context.Context, j *job) {
	if !j.opened {
		return
	}
	j.opened = false
	j.rec.Attempts--
	j.rec.Calling = 0
	rev, err := e.w.o.Records.PutJob(hard, j.rec, j.rev)
	if err != nil {
		e.w.log.Warn("job record of a call that did not start not updated; a redelivery reports the job in doubt",
			zap.String("job_id", j.spec.ID), zap.String("app_group", e.group), zap.Error(err))
		return
	}
	j.rev = rev
}
