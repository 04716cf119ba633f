package quota

import (
	"context"
	"fmt"
	"math"
	"time"

	"golang.org/x/time/rate"
)

// Bucket is a group's pacing token bucket at a moment. It travels in the
// group's ledger record, written with each reservation, so that one pacer
// per group holds across replicas: whichever replica owns the group next
// continues the same bucket instead of starting with a full burst.
type Bucket struct {
	Tokens float64   // tokens left at At, after the reservation's token
	At     time.Time // zero: no bucket stored yet (a new period's record)
}

// IsZero reports whether no bucket is stored.
func (b Bucket) IsZero() bool { return b.At.IsZero() }

func (b Bucket) same(o Bucket) bool { return b.Tokens == o.Tokens && b.At.Equal(o.At) }

// bucket is the pacer bucket stored in the record.
func (r record) bucket() Bucket {
	if r.PacerAt == 0 {
		return Bucket{}
	}
	return Bucket{Tokens: r.PacerTokens, At: time.UnixMicro(r.PacerAt)}
}

// withBucket stores b in the record.
func (r record) withBucket(b Bucket) record {
	r.PacerTokens, r.PacerAt = b.Tokens, b.At.UnixMicro()
	return r
}

// Paced is returned by a pacing ledger's Reserve when the group's shared
// bucket holds no token yet: another replica spent it. Nothing was
// reserved; try again at Until.
type Paced struct {
	Group string
	Until time.Time
}

func (e *Paced) Error() string {
	return fmt.Sprintf("app group %s paced until %s", e.Group, e.Until.UTC().Format(time.RFC3339Nano))
}

// take is the pacing half of a reservation at now: it continues from
// stored when another replica wrote it (else from this pacer's own bucket),
// takes one token, and returns the bucket to store with the reservation.
// It does not spend the token: a compare-and-swap may run it several times,
// and commit applies the one that was written. When there is no token it
// adopts a stored bucket (the record keeps it either way) and returns
// *Paced.
func (p *Pacer) take(group string, stored Bucket, now time.Time) (Bucket, error) {
	l, err := p.limiter(group)
	if err != nil {
		return Bucket{}, err
	}
	p.mu.Lock()
	own := p.stored[group]
	p.mu.Unlock()
	tokens := l.TokensAt(now)
	foreign := !stored.IsZero() && !stored.same(own)
	if foreign {
		tokens = refill(stored, now, l.Limit(), l.Burst())
	}
	if tokens < 1 {
		if foreign { // continue it: Wait now waits for the group's token
			p.adopt(group, stored)
		}
		return Bucket{}, &Paced{Group: group, Until: now.Add(max(tokensWait(1-tokens, l.Limit()), time.Millisecond))}
	}
	// Microseconds: what the ledger record keeps.
	return Bucket{Tokens: tokens - 1, At: time.UnixMicro(now.UnixMicro())}, nil
}

// commit applies a reservation's take: b is the bucket after it; written
// says b is also what the ledger record now holds (a token taken from a
// local lease of slots is not written). When b continues this pacer's own
// bucket, the token is taken from it exactly; otherwise the pacer adopts b.
func (p *Pacer) commit(group string, b Bucket, written bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.lims[group]
	if !ok {
		return
	}
	if math.Abs(l.TokensAt(b.At)-1-b.Tokens) > 1e-9 || !l.AllowN(b.At, 1) {
		p.lims[group] = anchored(l, b)
	}
	if written {
		p.stored[group] = b
	}
}

// adopt makes b, another replica's bucket as the ledger record holds it,
// this pacer's bucket for group.
func (p *Pacer) adopt(group string, b Bucket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l, ok := p.lims[group]; ok {
		p.lims[group] = anchored(l, b)
		p.stored[group] = b
	}
}

// anchored is a limiter with old's rate and burst that holds b.Tokens at
// b.At. rate.Limiter cannot be set to a number of tokens: a fresh one,
// emptied at the moment the bucket last held none, refills to them (the
// moment rounded down, so never to fewer).
func anchored(old *rate.Limiter, b Bucket) *rate.Limiter {
	burst := old.Burst()
	l := rate.NewLimiter(old.Limit(), burst)
	t := min(max(b.Tokens, 0), float64(burst))
	empty := b.At.Add(-time.Duration(math.Ceil(t / float64(old.Limit()) * float64(time.Second))))
	l.AllowN(empty, burst)
	return l
}

// tokensFrom reports the tokens the group's shared bucket holds at now:
// from stored when another replica wrote it, else this pacer's own.
func (p *Pacer) tokensFrom(group string, stored Bucket, now time.Time) float64 {
	l, err := p.limiter(group)
	if err != nil {
		return 0
	}
	p.mu.Lock()
	own := p.stored[group]
	p.mu.Unlock()
	if !stored.IsZero() && !stored.same(own) {
		return refill(stored, now, l.Limit(), l.Burst())
	}
	return l.TokensAt(now)
}

// SharedTokens reports the tokens available to the group now, reading the
// bucket u carries (Usage.Bucket) when another replica wrote it: what a
// forecast on any replica should use.
func (p *Pacer) SharedTokens(group string, u Usage) float64 {
	return p.tokensFrom(group, u.Bucket, p.clock.Now())
}

// refill is b's tokens at now. A now before b.At (another replica's clock
// ahead of ours) adds nothing.
func refill(b Bucket, now time.Time, lim rate.Limit, burst int) float64 {
	t := b.Tokens
	if d := now.Sub(b.At); d > 0 {
		t += d.Seconds() * float64(lim)
	}
	return min(t, float64(burst))
}

// tokensWait is how long lim takes to refill n tokens.
func tokensWait(n float64, lim rate.Limit) time.Duration {
	if n <= 0 || lim <= 0 {
		return 0
	}
	return time.Duration(n / float64(lim) * float64(time.Second))
}

// PaceWith makes Reserve also take the group's token from p, in the same
// step as the slot, and keep the group's bucket in the ledger record: one
// pacer per group across every replica sharing the ledger. Call it once,
// before the ledger is used. Reserve then returns *Paced when the shared
// bucket is empty.
func (l *KV) PaceWith(p *Pacer) { l.pacer = p }

// PaceWith is KV.PaceWith for the memory ledger.
func (m *Memory) PaceWith(p *Pacer) { m.pacer = p }

// pace takes the reservation's token from p (nil: no pacing) and stores
// the bucket in r. A record without a bucket (the period's first
// reservation) continues prev, the previous period's: the bucket does not
// refill at a period boundary, whichever replica reserves first.
func pace(p *Pacer, group string, r record, prev func() Bucket, now time.Time) (record, Bucket, error) {
	if p == nil {
		return r, Bucket{}, nil
	}
	stored := r.bucket()
	if stored.IsZero() {
		stored = prev()
	}
	b, err := p.take(group, stored, now)
	if err != nil {
		return r, Bucket{}, err
	}
	return r.withBucket(b), b, nil
}

// previous is the period before per.
func previous(pol Policy, per Period) Period {
	return pol.PeriodAt(per.Start.Add(-time.Nanosecond))
}

// prevBucket reads the bucket of the group's previous period, once.
func (l *KV) prevBucket(ctx context.Context, group string, pol Policy, per Period) func() Bucket {
	var (
		b    Bucket
		read bool
	)
	return func() Bucket {
		if !read {
			read = true
			if r, err := l.get(ctx, Key(group, previous(pol, per))); err == nil {
				b = r.bucket()
			}
		}
		return b
	}
}
