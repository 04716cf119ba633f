package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
)

// ownerWait is how long a job waits before looking again at an id or a
// pair that a live message holds. The holder either finishes (its message
// is acked, so it is gone) or is delivered again within the consumer's
// AckWait, so the wait is bounded.
const ownerWait = 2 * time.Second

// waitHeld puts the job back for ownerWait and pauses the lane as long:
// the job stays at the head of its FIFO (redeliveries come first), and the
// lane looks again when the delay ends instead of idling until its next
// recheck.
func (e *executor) waitHeld(j *job) next {
	_ = j.msg.NakWithDelay(ownerWait)
	return next{pauseUntil: e.w.o.Clock.Now().Add(ownerWait), reason: "record_held"}
}

// claim reads a job's records and decides, before any call, whether it may
// call Braze (README: Crash safety and calls in doubt): a stored answer or a created pair is
// answered without a call; an id or a pair held by a live message waits; one
// held by a message that is gone is taken over; an open call found in the
// records is in doubt and the group's in_doubt policy decides; otherwise the
// pair is reserved (calling) with compare-and-swap. done is true when the
// message was answered or put back (release has then been called).
func (e *executor) claim(hard context.Context, j *job, release func()) (n next, done bool) {
	w := e.w
	var (
		pair queue.PairRecord
		pErr error
		wg   sync.WaitGroup
	)
	end := w.stage(StageClaimRead, true)
	if j.spec.SendID != "" {
		wg.Go(func() { pair, j.pairRev, pErr = w.o.Records.Pair(hard, e.group, j.spec.CampaignID, j.spec.SendID) })
	}
	var err error
	j.rec, j.rev, err = w.o.Records.Job(hard, e.group, j.spec.ID)
	wg.Wait()
	end()
	if err == nil {
		err = pErr
	}
	if err != nil {
		release()
		return e.putBack(j, "record", err), true
	}
	if j.rec.Final != nil {
		release()
		stored := *j.rec.Final
		stored.Duplicate = j.rec.Owner != j.seq
		stored.Meta = j.spec.Meta
		j.pairRev = 0
		e.finish(hard, j, stored, false)
		return next{}, true
	}
	prev := j.rec // as found, before this message takes the id
	if prev.Owner != 0 && prev.Owner != j.seq {
		if n, done := e.waitForOwner(hard, j, prev.Owner, "job", release); done {
			return n, true
		}
	}
	j.rec.ID, j.rec.AppGroup, j.rec.Owner = j.spec.ID, e.group, j.seq
	if j.pairRev != 0 && pair.Created() {
		release()
		j.pairRev = 0 // not ours to drop
		r := j.result(queue.StatusCreated)
		r.SendID, r.Duplicate = pair.SendID, pair.JobID != j.spec.ID
		j.rec.Calling = 0
		e.finish(hard, j, r, true)
		return next{}, true
	}
	// A call of this id left open by an earlier delivery (this message's,
	// or a gone owner's): it may have reached Braze.
	doubt := prev.Calling != 0
	if j.pairRev != 0 && pair.Seq != j.seq {
		if n, done := e.waitForOwner(hard, j, pair.Seq, "pair", release); done {
			return n, true
		}
		open, created, err := e.pairCallOpen(hard, j, pair, prev)
		if err != nil {
			release()
			return e.putBack(j, "pair_owner", err), true
		}
		if created != nil {
			release()
			j.pairRev = 0
			r := j.result(queue.StatusCreated)
			r.SendID, r.Duplicate = created.SendID, created.ID != j.spec.ID
			j.rec.Calling = 0
			e.finish(hard, j, r, true)
			return next{}, true
		}
		doubt = doubt || open
	}
	j.rec.Calling = 0
	if doubt {
		policy := e.settings.Load().InDoubt
		w.o.Metrics.InDoubt.WithLabelValues(e.group).Inc()
		w.log.Warn("call in doubt: an earlier call for this job may have reached Braze without its answer recorded",
			zap.String("job_id", j.spec.ID), zap.String("app_group", e.group), zap.Uint64("seq", j.seq),
			zap.Int("attempts", j.rec.Attempts), zap.String("in_doubt", policy.String()))
		j.rec.InDoubt = true
		if policy == InDoubtFail {
			// The reservation is left as it is: once this message is acked
			// its owner is gone and the next job for the pair finds the
			// call in doubt too.
			release()
			j.pairRev = 0
			r := j.result(queue.StatusFailed)
			r.Error = fail(queue.CodeOutcomeUnknown, "an earlier call may have reached Braze without its answer recorded; the app group's in_doubt policy is fail, so no call was made")
			e.finish(hard, j, r, true)
			return next{}, true
		}
	}
	if j.spec.SendID != "" && (j.pairRev == 0 || pair.Seq != j.seq) {
		res := queue.PairRecord{State: queue.PairCalling, JobID: j.spec.ID, Seq: j.seq, Attempt: j.rec.Attempts, At: w.o.Clock.Now().UTC()}
		end := w.stage(StagePairReserve, true)
		rev, err := w.o.Records.PutPair(hard, e.group, j.spec.CampaignID, j.spec.SendID, res, j.pairRev)
		end()
		if err != nil {
			j.pairRev = 0
			release()
			if errors.Is(err, queue.ErrConflict) {
				return e.waitHeld(j), true
			}
			return e.putBack(j, "pair_record", err), true
		}
		j.pairRev = rev
	}
	return next{}, false
}

// claimFirst is claim without the record reads for a message's first
// delivery: admission found neither record answering it moments ago, and
// both are written as new keys with compare-and-swap (the pair reservation
// here, the job record as the call opens), so a record written meanwhile —
// the pair or the id taken by another message — fails its write. A pair
// found taken sends the job through claim, which reads the records; an id
// found taken puts it back (readAgain) for a redelivery, which always goes
// through claim. delivered is the message's delivery count.
func (e *executor) claimFirst(hard context.Context, j *job, delivered uint64, release func()) (next, bool) {
	if delivered != 1 {
		return e.claim(hard, j, release)
	}
	w := e.w
	j.rec, j.rev, j.unread = queue.JobRecord{ID: j.spec.ID, AppGroup: e.group, Owner: j.seq}, 0, true
	if j.spec.SendID == "" {
		return next{}, false
	}
	res := queue.PairRecord{State: queue.PairCalling, JobID: j.spec.ID, Seq: j.seq, At: w.o.Clock.Now().UTC()}
	end := w.stage(StagePairReserve, true)
	rev, err := w.o.Records.PutPair(hard, e.group, j.spec.CampaignID, j.spec.SendID, res, 0)
	end()
	switch {
	case err == nil:
		j.pairRev = rev
		return next{}, false
	case errors.Is(err, queue.ErrConflict):
		j.unread = false
		return e.claim(hard, j, release)
	}
	release()
	return e.putBack(j, "pair_record", err), true
}

// readAgain puts back a first delivery whose job id turned out taken when
// its record was to be created: the pair reservation it took is dropped
// (the id's record decides, as for any redelivery) and the message comes
// back at once, to be claimed with the records read. A reservation that
// cannot be dropped stays this message's, which its redelivery finds.
func (e *executor) readAgain(hard context.Context, j *job) next {
	e.dropPair(hard, j)
	_ = j.msg.Nak()
	return next{}
}

// waitForOwner puts the job back for ownerWait while the message at owner
// still exists; done is false when that message is gone (acked, purged, or
// below the stream's first sequence) and the job may take over.
func (e *executor) waitForOwner(hard context.Context, j *job, owner uint64, what string, release func()) (next, bool) {
	alive, err := queue.MessageExists(hard, e.w.o.JS, owner)
	if err != nil {
		release()
		return e.putBack(j, "owner", err), true
	}
	if alive {
		release()
		j.pairRev = 0
		return e.waitHeld(j), true
	}
	e.w.log.Info("owner gone; taking over", zap.String("job_id", j.spec.ID), zap.String("app_group", e.group),
		zap.String("record", what), zap.Uint64("owner_seq", owner), zap.Uint64("seq", j.seq))
	return next{}, false
}

// pairCallOpen reads the record of the job that reserved pair (prev when
// it is this job's id) and reports whether its call may have reached Braze
// without its answer recorded, or, when that job's final record says it
// created the pair (the pair record was lost), its result.
func (e *executor) pairCallOpen(hard context.Context, j *job, pair queue.PairRecord, prev queue.JobRecord) (open bool, created *queue.Result, err error) {
	rec := prev
	if pair.JobID != j.spec.ID {
		if rec, _, err = e.w.o.Records.Job(hard, e.group, pair.JobID); err != nil {
			return false, nil, err
		}
	}
	if f := rec.Final; f != nil && f.Status == queue.StatusCreated && f.SendID != "" {
		return false, f, nil
	}
	// Settled only when that job's record still names the reserving message
	// and shows every call answered.
	return rec.Owner != pair.Seq || rec.Calling != 0 || rec.InDoubt, nil, nil
}

// recheckPair runs before every retry: the reservation must still be this
// job's. A pair created meanwhile is answered; a reservation lost to
// another message puts the job back. done is true when the message was
// answered or put back.
func (e *executor) recheckPair(hard context.Context, j *job, release func()) (next, bool) {
	if j.spec.SendID == "" {
		return next{}, false
	}
	pair, rev, err := e.w.o.Records.Pair(hard, e.group, j.spec.CampaignID, j.spec.SendID)
	switch {
	case err != nil:
		release()
		return e.putBack(j, "pair_record", err), true
	case rev == j.pairRev:
		return next{}, false
	case rev != 0 && pair.Created():
		release()
		j.pairRev = 0
		r := j.result(queue.StatusCreated)
		r.SendID, r.Duplicate = pair.SendID, pair.JobID != j.spec.ID
		e.finish(hard, j, r, true)
		return next{}, true
	}
	release()
	j.pairRev = 0
	return e.waitHeld(j), true
}

// dropPair removes this job's pair reservation after an outcome that did not
// create the pair, so that a later job for it calls without waiting.
func (e *executor) dropPair(hard context.Context, j *job) {
	if j.pairRev == 0 {
		return
	}
	if err := e.w.o.Records.DropPair(hard, e.group, j.spec.CampaignID, j.spec.SendID, j.pairRev); err != nil {
		e.w.log.Warn("pair reservation not removed; the next job for the pair will take it over", zap.String("job_id", j.spec.ID),
			zap.String("app_group", e.group), zap.Error(err))
	}
	j.pairRev = 0
}

// saveRecord writes the job record between calls (the open call closed,
// a failure counted). A record not written leaves a call open: a
// redelivery then treats it as in doubt, the safe reading.
func (e *executor) saveRecord(hard context.Context, j *job) {
	rev, err := e.w.o.Records.PutJob(hard, j.rec, j.rev)
	if err != nil {
		e.w.log.Warn("job record not updated after a call", zap.String("job_id", j.spec.ID), zap.String("app_group", e.group), zap.Error(err))
		return
	}
	j.rev = rev
}
