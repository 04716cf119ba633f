package quota_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sendid/sendid/quota"
)

type ledgerKit struct {
	clock *quota.FakeClock
	pols  *quota.Policies
	logs  *observer.ObservedLogs
}

func newKit(t *testing.T, start time.Time, pol quota.Policy) ledgerKit {
	core, logs := observer.New(zap.InfoLevel)
	clock := quota.NewFakeClock(start)
	k := ledgerKit{clock: clock, pols: quota.NewPolicies(zap.New(core)).UseClock(clock), logs: logs}
	k.pols.Set("g", pol)
	return k
}

// ledgers runs fn against the memory ledger and a KV ledger with the same
// policies and clock: both must behave identically.
func ledgers(t *testing.T, start time.Time, pol quota.Policy, fn func(t *testing.T, k ledgerKit, l quota.Ledger)) {
	t.Run("memory", func(t *testing.T) {
		k := newKit(t, start, pol)
		fn(t, k, quota.NewMemory(k.pols, k.clock))
	})
	t.Run("kv", func(t *testing.T) {
		k := newKit(t, start, pol)
		fn(t, k, quota.NewKV(ledgerBucket(t, startServer(t)), k.pols, k.clock))
	})
}

func exhaustedUntil(t *testing.T, err error) time.Time {
	t.Helper()
	var ex *quota.Exhausted
	if !errors.As(err, &ex) {
		t.Fatalf("err = %v, want *quota.Exhausted", err)
	}
	return ex.Until
}

var day0 = time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)

func TestLedgerCapAndRelease(t *testing.T) {
	ledgers(t, day0, quota.Policy{Cap: 3, Burst: 1, Period: 24 * time.Hour}, func(t *testing.T, k ledgerKit, l quota.Ledger) {
		ctx := context.Background()
		var slots []quota.Slot
		for range 3 {
			s, err := l.Reserve(ctx, "g")
			if err != nil {
				t.Fatal(err)
			}
			slots = append(slots, s)
		}
		_, err := l.Reserve(ctx, "g")
		if u := exhaustedUntil(t, err); !u.Equal(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("until %s", u)
		}
		if err := l.Release(ctx, slots[0]); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Reserve(ctx, "g"); err != nil {
			t.Fatalf("after release: %v", err)
		}
		k.clock.Set(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC))
		if _, err := l.Reserve(ctx, "g"); err != nil {
			t.Fatalf("next period: %v", err)
		}
		u, err := l.Usage(ctx, "g")
		if err != nil || u.Used != 1 || u.Remaining != 2 || u.Cap != 3 {
			t.Fatalf("usage %+v %v", u, err)
		}
		if _, err := l.Reserve(ctx, "nope"); !errors.Is(err, quota.ErrUnknownGroup) {
			t.Fatalf("unknown group: %v", err)
		}
	})
}

func TestLedgerSync(t *testing.T) {
	ledgers(t, day0, quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}, func(t *testing.T, k ledgerKit, l quota.Ledger) {
		ctx := context.Background()
		// Braze counted more than we did: used := max(used, limit-remaining).
		if err := l.Sync(ctx, "g", quota.Observation{Known: true, Limit: 100, Remaining: 40}); err != nil {
			t.Fatal(err)
		}
		if u, _ := l.Usage(ctx, "g"); u.Used != 60 {
			t.Fatalf("used %d, want 60", u.Used)
		}
		// Headers that come with no answer of ours (Sync) only raise the
		// count; lowering it is Settle's, for the call it answers.
		_ = l.Sync(ctx, "g", quota.Observation{Known: true, Limit: 100, Remaining: 90})
		if u, _ := l.Usage(ctx, "g"); u.Used != 60 {
			t.Fatalf("used %d, want 60", u.Used)
		}
		// A lower Braze limit rules.
		_ = l.Sync(ctx, "g", quota.Observation{Known: true, Limit: 61, Remaining: 1})
		if u, _ := l.Usage(ctx, "g"); u.Cap != 61 || u.Remaining != 1 {
			t.Fatalf("usage %+v", u)
		}
		// A higher one keeps the configured cap, logged once.
		for range 3 {
			_ = l.Sync(ctx, "g", quota.Observation{Known: true, Limit: 500, Remaining: 440})
		}
		if u, _ := l.Usage(ctx, "g"); u.Cap != 100 {
			t.Fatalf("cap %d, want the configured 100", u.Cap)
		}
		if n := k.logs.FilterMessageSnippet("higher limit").Len(); n != 1 {
			t.Fatalf("higher limit logged %d times", n)
		}
		// A 429 blocks until Braze's reset even though the local count has room.
		reset := day0.Add(2 * time.Hour)
		_ = l.Sync(ctx, "g", quota.Observation{RateLimited: true, Reset: reset})
		_, err := l.Reserve(ctx, "g")
		if u := exhaustedUntil(t, err); !u.Equal(reset) {
			t.Fatalf("until %s, want Braze's reset %s", u, reset)
		}
		k.clock.Set(reset)
		if _, err := l.Reserve(ctx, "g"); err != nil {
			t.Fatalf("after reset: %v", err)
		}
	})
}

func TestLedgerBrazeResetVersusPeriodEnd(t *testing.T) {
	midnight := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	t.Run("earlier", func(t *testing.T) {
		// Braze resets at 22:00 but our count is full: our period end rules.
		ledgers(t, day0, quota.Policy{Cap: 5, Burst: 1, Period: 24 * time.Hour}, func(t *testing.T, k ledgerKit, l quota.Ledger) {
			ctx := context.Background()
			_ = l.Sync(ctx, "g", quota.Observation{Known: true, Limit: 5, Remaining: 0, Reset: midnight.Add(-2 * time.Hour)})
			_, err := l.Reserve(ctx, "g")
			if u := exhaustedUntil(t, err); !u.Equal(midnight) {
				t.Fatalf("until %s, want %s", u, midnight)
			}
			k.clock.Set(midnight.Add(-time.Hour))
			_, err = l.Reserve(ctx, "g")
			if u := exhaustedUntil(t, err); !u.Equal(midnight) {
				t.Fatalf("after Braze's reset: until %s, want %s", u, midnight)
			}
			k.clock.Set(midnight)
			if _, err := l.Reserve(ctx, "g"); err != nil {
				t.Fatalf("new period: %v", err)
			}
		})
	})
	t.Run("later", func(t *testing.T) {
		// Braze resets at 01:00: the block carries into our next period.
		reset := midnight.Add(time.Hour)
		ledgers(t, day0, quota.Policy{Cap: 5, Burst: 1, Period: 24 * time.Hour}, func(t *testing.T, k ledgerKit, l quota.Ledger) {
			ctx := context.Background()
			_ = l.Sync(ctx, "g", quota.Observation{Known: true, Limit: 5, Remaining: 0, Reset: reset})
			k.clock.Set(midnight)
			_, err := l.Reserve(ctx, "g")
			if u := exhaustedUntil(t, err); !u.Equal(reset) {
				t.Fatalf("until %s, want %s", u, reset)
			}
			k.clock.Set(reset)
			if _, err := l.Reserve(ctx, "g"); err != nil {
				t.Fatalf("after Braze's reset: %v", err)
			}
		})
	})
}
