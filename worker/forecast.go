package worker

import (
	"context"
	"sync"
	"time"

	"github.com/sendid/sendid/quota"
)

// fcMaxAge is how old admission's forecast snapshot may get. With one
// replica it only misses released slots (a duplicate answered by a lane);
// with several, the jobs other replicas admitted meanwhile.
const fcMaxAge = 5 * time.Second

// forecastSnapshot is what admission reads to place a new job in its
// group's queue: refreshed from the ledger and the consumer at most every
// fcMaxAge, and counting the jobs admitted since. Lanes move a job from
// "ahead" to "used", which leaves their sum — what decides a deferral —
// unchanged.
//
// mu also orders slot-taking and acks against forecasts: a slot held for a
// message is counted by the ledger and (as pending or ack-pending) by the
// consumer; held lets the refresh count it once.
type forecastSnapshot struct {
	mu     sync.Mutex
	held   int
	u      quota.Usage
	ahead  int
	at     time.Time
	tokens float64 // the pacer's tokens at the snapshot: the jobs run since are still "ahead"
	pause  time.Time
}

// snapshotSource reads the state a refresh needs.
type snapshotSource struct {
	pending func(ctx context.Context) (pending int, pausedFor time.Duration, paused bool, err error)
	usage   func(ctx context.Context) (quota.Usage, error)
	tokens  func(u quota.Usage) float64 // the group's shared bucket, as u carries it
}

// admitted counts one more job ahead.
func (f *forecastSnapshot) admitted() {
	f.mu.Lock()
	f.ahead++
	f.mu.Unlock()
}

// hold runs reserve and, when it succeeds, counts its slot as held.
func (f *forecastSnapshot) hold(reserve func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := reserve()
	if err == nil {
		f.held = 1
	}
	return err
}

// drop runs give (a release or an ack) and counts the slot as no longer
// held, in one step, so a refresh never sees the job twice or not at all.
func (f *forecastSnapshot) drop(give func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	give()
	f.held = 0
}

// stale reports whether a forecast at now, in period per, would refresh
// the snapshot first.
func (f *forecastSnapshot) stale(now time.Time, per quota.Period) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.staleLocked(now, per)
}

func (f *forecastSnapshot) staleLocked(now time.Time, per quota.Period) bool {
	return now.Sub(f.at) > fcMaxAge || !f.u.PeriodEnd.Equal(per.End)
}

// forecast returns how many jobs are ahead of a newly admitted one and when
// it is forecast to be called (never before now), refreshing the snapshot
// from src when it is older than fcMaxAge or from another period.
func (f *forecastSnapshot) forecast(ctx context.Context, now time.Time, pol quota.Policy, per quota.Period, src snapshotSource) (int, time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.staleLocked(now, per) {
		pending, pausedFor, paused, err := src.pending(ctx)
		if err != nil {
			return 0, time.Time{}, err
		}
		u, err := src.usage(ctx)
		if err != nil {
			return 0, time.Time{}, err
		}
		f.u, f.at, f.tokens = u, now, src.tokens(u)
		f.ahead = pending - f.held
		if f.ahead < 0 {
			// The lane holds a slot whose message the consumer no longer
			// counts (acked, or not fetched): the ledger counts that slot,
			// yet no job stands behind it. Left as used, it deferred the
			// job that would take the period's last slot.
			f.u.Used += f.ahead
			f.u.Remaining -= f.ahead
			f.ahead = 0
		}
		f.pause = time.Time{}
		if paused {
			f.pause = now.Add(pausedFor)
		}
	}
	// Forecast from the snapshot's moment, with its tokens, so that the jobs
	// run since are counted once (as ahead), not twice (also as spent tokens).
	u := withPause(f.u, !f.pause.IsZero(), f.pause)
	eta := quota.Forecast(f.at, pol, u, f.tokens, f.ahead)
	if eta.Before(now) {
		eta = now
	}
	return f.ahead, eta, nil
}
