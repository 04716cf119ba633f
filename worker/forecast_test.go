package worker

import (
	"context"
	"testing"
	"time"

	"github.com/sendid/sendid/quota"
)

// A slot the lane holds while it looks for a message that is not there is
// not a job: a new job still gets the period's last slot, and only the one
// after it is deferred.
func TestForecastSlotHeldForNoMessage(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 2, Burst: 2, Period: 24 * time.Hour, Location: time.UTC}
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	per := pol.PeriodAt(now)
	used, pending := 1, 0 // one job created earlier; nothing waiting
	var f forecastSnapshot
	if err := f.hold(func() error { used++; return nil }); err != nil { // the lane reserves, then fetches
		t.Fatal(err)
	}
	src := snapshotSource{
		pending: func(context.Context) (int, time.Duration, bool, error) { return pending, 0, false, nil },
		usage: func(context.Context) (quota.Usage, error) {
			return quota.Usage{Cap: pol.Cap, Used: used, Remaining: pol.Cap - used, PeriodStart: per.Start, PeriodEnd: per.End}, nil
		},
		tokens: func(quota.Usage) float64 { return 1 },
	}
	ahead, eta, err := f.forecast(context.Background(), now, pol, per, src)
	if err != nil || ahead != 0 || !eta.Before(per.End) {
		t.Fatalf("ahead %d, eta %s, err %v: want the period's last slot now", ahead, eta, err)
	}
	f.admitted()
	if _, eta, _ = f.forecast(context.Background(), now, pol, per, src); eta.Before(per.End) {
		t.Fatalf("a third job in a cap of 2 forecast at %s, within the period", eta)
	}

	// The held slot's message in flight (ack-pending): it is one job, not two.
	var g forecastSnapshot
	used, pending = 2, 1
	_ = g.hold(func() error { return nil })
	if _, eta, _ = g.forecast(context.Background(), now, pol, per, src); eta.Before(per.End) {
		t.Fatalf("with both slots taken a new job is forecast at %s, within the period", eta)
	}
}
