package quota_test

import (
	"context"
	"testing"
	"time"

	"github.com/sendid/sendid/quota"
)

func TestForecast(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	now := day0 // 09:00 UTC
	u := quota.Usage{Cap: 100, Used: 95}
	slot := pol.Interval() // (24h - 100ms) / 100
	d := func(n int) time.Time { return time.Date(2026, 11, 27+n, 0, 0, 0, 0, time.UTC) }
	for _, tc := range []struct {
		ahead int
		want  time.Time
	}{
		{0, now}, {4, now}, // the 5 remaining today, within the burst
		{5, d(1)}, {14, d(1)}, // first 10 tomorrow ride the burst
		{15, d(1).Add(slot)}, {104, d(1).Add(90 * slot)}, // then one per 14m24s
		{105, d(2)}, {204, d(2).Add(90 * slot)},
		{205, d(3)}, {249, d(3).Add(35 * slot)},
	} {
		if got := quota.Forecast(now, pol, u, 10, tc.ahead); !got.Equal(tc.want) {
			t.Errorf("ahead %d: %s, want %s", tc.ahead, got, tc.want)
		}
	}
	// An empty bucket paces today's remaining slots.
	if got := quota.Forecast(now, pol, u, 0, 2); !got.Equal(now.Add(3 * slot)) {
		t.Errorf("paced today: %s", got)
	}
	// Exhausted until Braze's reset tomorrow at 01:00.
	u2 := quota.Usage{Cap: 100, Used: 100, ExhaustedUntil: d(1).Add(time.Hour)}
	if got := quota.Forecast(now, pol, u2, 10, 0); !got.Equal(d(1).Add(time.Hour)) {
		t.Errorf("exhausted: %s", got)
	}
	// Short periods: cap 5 per 10s, burst 5, 12 jobs at an empty ledger.
	p10 := quota.Policy{Cap: 5, Burst: 5, Period: 10 * time.Second}
	t0 := time.Date(2026, 11, 27, 9, 0, 3, 0, time.UTC)
	// Five jobs spend the burst now; 7s/1.98s = 3.54 tokens refill by
	// 09:00:10, so the next period's fourth job waits 0.46 of an interval
	// and the fifth 1.46.
	iv := p10.Interval() // (10s - 100ms) / 5
	left := 1 - (7*time.Second%iv).Seconds()/iv.Seconds()
	at := func(k float64) time.Time { return t0.Add(7*time.Second + time.Duration(k*float64(iv))) }
	for ahead, want := range map[int]time.Time{0: t0, 4: t0, 5: at(0), 7: at(0), 8: at(left), 9: at(left + 1), 10: t0.Add(17 * time.Second)} {
		if got := quota.Forecast(t0, p10, quota.Usage{Cap: 5}, 5, ahead); got.Sub(want).Abs() > time.Microsecond {
			t.Errorf("10s ahead %d: %s, want %s", ahead, got, want)
		}
	}
}

func TestPacer(t *testing.T) {
	t.Parallel()
	clock := quota.NewFakeClock(day0)
	p := quota.NewPacer(clock)
	p.Set("g", quota.Policy{Cap: 10, Burst: 2, Period: 10 * time.Second}) // 1/s
	ctx := context.Background()
	// Waiting does not spend: an idle probe costs nothing.
	for range 5 {
		if err := p.Wait(ctx, "g"); err != nil {
			t.Fatal(err)
		}
	}
	if tok := p.Tokens("g"); tok != 2 {
		t.Fatalf("tokens %v after waits without takes", tok)
	}
	p.Take("g")
	p.Take("g")
	done := make(chan error, 1)
	go func() { done <- p.Wait(ctx, "g") }()
	for clock.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("a token was granted from an empty bucket")
	case <-time.After(20 * time.Millisecond):
	}
	clock.Advance(time.Second)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	p.Take("g")
	// Cancellation ends a wait.
	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- p.Wait(cctx, "g") }()
	for clock.Waiters() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("cancelled wait returned nil")
	}
	// A cap change applies without restart: 100/10s means 0.1s per token.
	p.Set("g", quota.Policy{Cap: 100, Burst: 2, Period: 10 * time.Second})
	clock.Advance(time.Second)
	if tok := p.Tokens("g"); tok < 1.9 {
		t.Fatalf("tokens %v after refill", tok)
	}
}
