package quota

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Pacer spreads each group's calls evenly: a token bucket per group with
// rate Cap/Period and the policy's burst. It shapes traffic only; the Ledger
// decides whether a call may happen at all (a fresh limiter starts full, so a
// restart would otherwise refill the burst).
//
// With several replicas the group's bucket is shared through its ledger
// record (see Bucket): a ledger that paces (PaceWith) takes the token with
// the reservation and stores the bucket, and a replica that takes a group
// over continues that bucket.
type Pacer struct {
	clock Clock
	mu    sync.Mutex
	lims  map[string]*rate.Limiter
	// stored is the bucket this pacer last wrote to or read from the
	// group's ledger record: a record holding another bucket was written by
	// another replica since.
	stored map[string]Bucket
}

// NewPacer returns a pacer with no groups.
func NewPacer(clock Clock) *Pacer {
	return &Pacer{clock: clock, lims: map[string]*rate.Limiter{}, stored: map[string]Bucket{}}
}

// Set adds a group or applies a changed policy to it without losing its
// current tokens.
func (p *Pacer) Set(group string, pol Policy) {
	now := p.clock.Now()
	lim := rate.Every(pol.Interval())
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.lims[group]; ok {
		l.SetLimitAt(now, lim)
		l.SetBurstAt(now, pol.Burst)
		return
	}
	l := rate.NewLimiter(lim, pol.Burst)
	l.AllowN(now, 0) // anchor the bucket on this clock
	p.lims[group] = l
}

func (p *Pacer) limiter(group string) (*rate.Limiter, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.lims[group]
	if !ok {
		return nil, fmt.Errorf("pacer: %w %q", ErrUnknownGroup, group)
	}
	return l, nil
}

// Wait blocks until the group has a token, without taking it, or ctx ends.
// The lane waits first and takes the token only once it has a job to spend
// it on (a pacing ledger takes it with the slot; see PaceWith): an idle
// probe must not cost a token.
//
// (rate.Reservation.CancelAt cannot give back a token that was granted
// without delay, so reserving first and cancelling later does not work.)
func (p *Pacer) Wait(ctx context.Context, group string) error {
	for {
		// Looked up each time: continuing a shared bucket replaces it.
		l, err := p.limiter(group)
		if err != nil {
			return err
		}
		tokens := l.TokensAt(p.clock.Now())
		if tokens >= 1 {
			return nil
		}
		need := time.Duration((1 - tokens) / float64(l.Limit()) * float64(time.Second))
		select {
		case <-p.clock.After(max(need, time.Millisecond)):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Take spends one of the group's tokens, outside a pacing ledger's
// reservation.
func (p *Pacer) Take(group string) {
	if l, err := p.limiter(group); err == nil {
		l.AllowN(p.clock.Now(), 1)
	}
}

// Tokens reports the tokens available to the group now.
func (p *Pacer) Tokens(group string) float64 {
	l, err := p.limiter(group)
	if err != nil {
		return 0
	}
	return l.TokensAt(p.clock.Now())
}

// Forecast returns the earliest time the job with ahead jobs before it in
// the group's backlog can be called, given the group's usage, the tokens in
// its pacer now, pacing at pol.Interval() and the period calendar. Jobs run
// in order; each period grants at most the effective cap; the next period
// starts with the tokens left at the end of this one (refilled while the
// lane waits, up to the burst), and so does every later one, since a full
// period refills what its cap spends.
func Forecast(now time.Time, pol Policy, u Usage, tokens float64, ahead int) time.Time {
	capN := u.Cap
	if capN <= 0 {
		capN = pol.Cap
	}
	interval := pol.Interval()
	per := pol.PeriodAt(now)
	t, used := now, u.Used
	if u.ExhaustedUntil.After(t) {
		t = u.ExhaustedUntil
		if !per.Contains(t) {
			per = pol.PeriodAt(t)
			used, tokens = 0, float64(pol.Burst)
		}
	}
	// This period: as many jobs as both the ledger and the pacer allow.
	avail := max(capN-used, 0)
	fit := int(tokens + float64(per.End.Sub(t))/float64(interval))
	n := min(avail, fit)
	if ahead < n {
		return t.Add(paced(ahead, tokens, interval))
	}
	ahead -= n
	next := min(float64(pol.Burst), tokens-float64(n)+float64(per.End.Sub(t))/float64(interval))
	// Later periods: whole periods of capN jobs each.
	per = pol.Advance(per, 1+ahead/capN)
	return per.Start.Add(paced(ahead%capN, max(next, 0), interval))
}

// paced is how long after a start with tokens available the job at index i
// (0-based) gets its token.
func paced(i int, tokens float64, interval time.Duration) time.Duration {
	wait := float64(i+1) - tokens
	if wait <= 0 {
		return 0
	}
	return time.Duration(wait * float64(interval))
}
