package quota_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sendid/sendid/quota"
)

func pacedUntil(t *testing.T, err error) time.Time {
	t.Helper()
	var p *quota.Paced
	if !errors.As(err, &p) {
		t.Fatalf("err = %v, want *quota.Paced", err)
	}
	return p.Until
}

// TestPacingLedger: a pacing ledger takes the group's token with the slot,
// refuses a slot (without spending it) while the bucket is empty, and
// carries the bucket in Usage.
func TestPacingLedger(t *testing.T) {
	pol := quota.Policy{Cap: 10, Burst: 2, Period: 10 * time.Second} // 1/s
	ledgers(t, day0, pol, func(t *testing.T, k ledgerKit, l quota.Ledger) {
		ctx := context.Background()
		p := quota.NewPacer(k.clock)
		p.Set("g", pol)
		l.(interface{ PaceWith(*quota.Pacer) }).PaceWith(p)
		for range 2 { // the burst
			if _, err := l.Reserve(ctx, "g"); err != nil {
				t.Fatal(err)
			}
		}
		_, err := l.Reserve(ctx, "g")
		if got := pacedUntil(t, err); !got.Equal(day0.Add(pol.Interval())) {
			t.Fatalf("paced until %s, want one interval", got)
		}
		u, err := l.Usage(ctx, "g")
		if err != nil || u.Used != 2 || u.Bucket.Tokens != 0 || !u.Bucket.At.Equal(day0) {
			t.Fatalf("usage %+v %v: a paced reservation must not take a slot; the bucket must be stored", u, err)
		}
		k.clock.Advance(pol.Interval() * 3 / 2)
		if _, err := l.Reserve(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		if got := p.Tokens("g"); got < 0.49 || got > 0.51 {
			t.Fatalf("tokens %v after a reservation at 1.5 tokens, want 0.5", got)
		}
	})
}

// TestSharedBucketAcrossReplicas: two replicas, each with its own pacer,
// share one KV ledger. The second continues the first's bucket instead of
// starting with a full burst, and so does the first after the second.
func TestSharedBucketAcrossReplicas(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	pol := quota.Policy{Cap: 40, Burst: 1, Period: 40 * time.Second} // 1/s, one at a time
	clock := quota.NewFakeClock(day0)
	ctx := context.Background()
	type replica struct {
		l *quota.KV
		p *quota.Pacer
	}
	var rs [2]replica
	for i := range rs {
		pols := quota.NewPolicies(zaptest.NewLogger(t))
		pols.Set("g", pol)
		rs[i] = replica{quota.NewKV(ledgerBucket(t, s), pols, clock), quota.NewPacer(clock)}
		rs[i].p.Set("g", pol)
		rs[i].l.PaceWith(rs[i].p)
	}
	a, b := rs[0], rs[1]
	if _, err := a.l.Reserve(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	// b's own pacer is full, but the group's bucket is empty.
	if got := b.p.Tokens("g"); got != 1 {
		t.Fatalf("b's local tokens %v, want a full burst of 1", got)
	}
	clock.Advance(400 * time.Millisecond)
	_, err := b.l.Reserve(ctx, "g")
	if got := pacedUntil(t, err); !got.Equal(day0.Add(pol.Interval())) {
		t.Fatalf("b paced until %s, want a's next token one interval after its call", got)
	}
	u, err := b.l.Usage(ctx, "g")
	if err != nil {
		t.Fatal(err)
	}
	// Any replica's forecast reads the shared bucket.
	if got := b.p.SharedTokens("g", u); got < 0.39 || got > 0.41 {
		t.Fatalf("shared tokens %v, want 0.4", got)
	}
	// b continues a's bucket: its own pacer now waits for the group's token.
	if got := b.p.Tokens("g"); got < 0.39 || got > 0.41 {
		t.Fatalf("b's local tokens %v after a paced reservation, want the group's 0.4", got)
	}
	clock.Advance(600 * time.Millisecond)
	if _, err := b.l.Reserve(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	// Back to a: its own bucket refilled, but b spent the token.
	clock.Advance(500 * time.Millisecond)
	_, err = a.l.Reserve(ctx, "g")
	if got := pacedUntil(t, err); !got.Equal(day0.Add(time.Second + pol.Interval())) {
		t.Fatalf("a paced until %s, want one interval after b's call", got)
	}
	clock.Advance(500 * time.Millisecond)
	if _, err := a.l.Reserve(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if u, err := a.l.Usage(ctx, "g"); err != nil || u.Used != 3 {
		t.Fatalf("usage %+v %v, want 3 slots: paced attempts take none", u, err)
	}
}

// TestSharedBucketAcrossPeriods: the bucket does not refill at a period
// boundary when another replica makes the new period's first reservation.
func TestSharedBucketAcrossPeriods(t *testing.T) {
	pol := quota.Policy{Cap: 10, Burst: 1, Period: 40 * time.Second} // one per 4s
	end := pol.PeriodAt(day0).End
	ledgersN := func(t *testing.T, mk func(k ledgerKit) quota.Ledger) {
		k := newKit(t, end.Add(-time.Second), pol)
		ctx := context.Background()
		var ps [2]*quota.Pacer
		var ls [2]quota.Ledger
		for i := range ls {
			ps[i] = quota.NewPacer(k.clock)
			ps[i].Set("g", pol)
			ls[i] = mk(k)
			ls[i].(interface{ PaceWith(*quota.Pacer) }).PaceWith(ps[i])
		}
		if _, err := ls[0].Reserve(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		k.clock.Advance(2 * time.Second) // into the next period
		_, err := ls[1].Reserve(ctx, "g")
		if want := end.Add(pol.Interval() - time.Second); !pacedUntil(t, err).Equal(want) {
			t.Fatalf("paced until %s, want %s", pacedUntil(t, err), want)
		}
		k.clock.Advance(2 * time.Second)
		if _, err := ls[1].Reserve(ctx, "g"); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("kv", func(t *testing.T) {
		s := startServer(t)
		ledgersN(t, func(k ledgerKit) quota.Ledger { return quota.NewKV(ledgerBucket(t, s), k.pols, k.clock) })
	})
}
