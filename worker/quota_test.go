package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// countingLedger counts every ledger operation a worker makes.
type countingLedger struct {
	quota.Ledger
	n atomic.Int64
}

func (c *countingLedger) Reserve(ctx context.Context, g string) (quota.Slot, error) {
	c.n.Add(1)
	return c.Ledger.Reserve(ctx, g)
}

func (c *countingLedger) Release(ctx context.Context, s quota.Slot) error {
	c.n.Add(1)
	return c.Ledger.Release(ctx, s)
}

func (c *countingLedger) Settle(ctx context.Context, s quota.Slot, obs quota.Observation, uncertain bool) error {
	c.n.Add(1)
	return c.Ledger.Settle(ctx, s, obs, uncertain)
}

func (c *countingLedger) Sync(ctx context.Context, g string, obs quota.Observation) error {
	c.n.Add(1)
	return c.Ledger.Sync(ctx, g, obs)
}

func (c *countingLedger) Usage(ctx context.Context, g string) (quota.Usage, error) {
	c.n.Add(1)
	return c.Ledger.Usage(ctx, g)
}

// opsPerSecond advances clock by steps seconds, one second at a time with
// a short real pause for the worker to act, and returns the ledger
// operations per simulated second meanwhile.
func opsPerSecond(clock *quota.FakeClock, led *countingLedger, steps int) float64 {
	before := led.n.Load()
	for range steps {
		clock.Advance(time.Second)
		time.Sleep(5 * time.Millisecond)
	}
	return float64(led.n.Load()-before) / float64(steps)
}

// No lane state turns into a busy loop: idle, paused by an operator,
// exhausted, paused for a configuration fault, rate limited by Braze —
// each costs at most 10 ledger operations per second of the worker's clock.
func TestLaneStatesCostFewLedgerOperations(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	day := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	cases := []struct {
		name  string
		pol   quota.Policy
		sim   brazetest.Options
		key   string
		setup func(t *testing.T, k *kit)
	}{
		{name: "idle", pol: day},
		{name: "paused", pol: day, setup: func(t *testing.T, k *kit) {
			if _, err := k.js.PauseConsumer(context.Background(), queue.Stream, queue.LaneConsumer("default"), time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			publishN(k, 3, "p")
		}},
		{name: "exhausted", pol: quota.Policy{Cap: 2, Burst: 10, Period: 24 * time.Hour}, setup: func(t *testing.T, k *kit) {
			publishN(k, 4, "e")
			k.results.waitFinals(t, 2, 20*time.Second)
		}},
		{name: "config fault", pol: day, key: "wrong-key", setup: func(t *testing.T, k *kit) {
			publishN(k, 2, "c")
			waitFor(t, func() bool { return k.sim.Stats().Calls >= 1 })
		}},
		{name: "rate limited", pol: day, sim: brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "key-default", Cap: 5}}}, setup: func(t *testing.T, k *kit) {
			publishN(k, 1, "r")
			k.results.waitFinals(t, 1, 20*time.Second)
			k.sim.SetUsed("key-default", 5) // another client spends the rest: the next call gets 429
			publishN(k, 3, "s")
			waitFor(t, func() bool { return k.sim.Stats().OverCap >= 1 })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := quota.NewFakeClock(start)
			led := &countingLedger{}
			sim := tc.sim
			if sim.Workspaces == nil {
				sim.Workspaces = []brazetest.Workspace{{Key: "key-default"}}
			}
			sim.Now = clock.Now
			o := kitOptions{groups: map[string]quota.Policy{"default": tc.pol}, sim: sim, clock: clock,
				ledger: func(l quota.Ledger) quota.Ledger { led.Ledger = l; return led }}
			if tc.key != "" {
				o.keys = map[string]string{"default": tc.key}
			}
			k := newKit(t, o)
			if tc.setup != nil {
				tc.setup(t, k)
			}
			rate := opsPerSecond(clock, led, 120)
			t.Logf("%s: %.2f ledger operations per second", tc.name, rate)
			if rate > 10 {
				t.Fatalf("%.1f ledger operations per second", rate)
			}
		})
	}
}

// On the DST days whose midnight does not exist, a job admitted in the hour
// before the gap runs in its own period: no deferred notice, and the lane
// stays quiet.
func TestMidnightGapDays(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ zone, at string }{
		// The last half hour before the gap: time.Date's early "midnight"
		// used to end the period an hour before the day did.
		{"Atlantic/Azores", "2026-03-28T23:30:00-01:00"},
		{"America/Santiago", "2026-09-05T23:30:00-04:00"},
		{"America/Havana", "2026-03-07T23:30:00-05:00"},
		{"Asia/Beirut", "2026-03-28T23:30:00+02:00"},
	} {
		t.Run(tc.zone, func(t *testing.T) {
			t.Parallel()
			loc, err := time.LoadLocation(tc.zone)
			if err != nil {
				t.Fatal(err)
			}
			at, err := time.Parse(time.RFC3339, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			clock := quota.NewFakeClock(at)
			led := &countingLedger{}
			k := newKit(t, kitOptions{
				groups: map[string]quota.Policy{"default": {Cap: 100, Burst: 10, Period: 24 * time.Hour, Location: loc}},
				sim:    brazetest.Options{Now: clock.Now}, clock: clock,
				ledger: func(l quota.Ledger) quota.Ledger { led.Ledger = l; return led },
			})
			publishN(k, 3, "d")
			for id, r := range k.results.waitFinals(t, 3, 20*time.Second) {
				if r.Status != queue.StatusCreated {
					t.Errorf("job %s: %+v", id, r)
				}
			}
			for _, r := range k.results.snapshot() {
				if r.Status == queue.StatusDeferred {
					t.Errorf("job %s deferred until %s although it ran in its own period", r.ID, r.DeferredUntil)
				}
			}
			rate := opsPerSecond(clock, led, 60)
			t.Logf("%s: %.2f ledger operations per second", tc.zone, rate)
			if rate > 10 {
				t.Fatalf("%.1f ledger operations per second", rate)
			}
		})
	}
}

// Must hold 5: cap 5, five 503s without rate-limit headers, then Braze is
// healthy: after one probe the job is created in the same period, the
// next one too, and the ledger matches Braze's headers.
func TestUncertainChargesSettledByOneProbe(t *testing.T) {
	t.Parallel()
	var failed atomic.Int64
	pol := quota.Policy{Cap: 5, Burst: 10, Period: 24 * time.Hour, ProbeInterval: time.Second}
	k := newKit(t, kitOptions{
		groups:      map[string]quota.Policy{"default": pol},
		sim:         brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "key-default", Cap: 5}}},
		maxAttempts: 10,
		front: func(sim http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if failed.Add(1) <= 5 { // an outage: no rate-limit headers
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusServiceUnavailable)
					_, _ = w.Write([]byte(`{"message":"Service Unavailable"}`))
					return
				}
				sim.ServeHTTP(w, r)
			})
		},
	})
	period := pol.PeriodAt(time.Now())
	k.publish("sendid.jobs", job("c1", "a", "a", "test.a"))
	a := k.results.waitFinals(t, 1, 30*time.Second)["a"]
	k.publish("sendid.jobs", job("c1", "b", "b", "test.b"))
	b := k.results.waitFinals(t, 2, 30*time.Second)["b"]
	if a.Status != queue.StatusCreated || a.Attempts != 6 || b.Status != queue.StatusCreated || b.Attempts != 1 {
		t.Fatalf("a: %+v\nb: %+v", a, b)
	}
	if !period.Contains(a.At) || !period.Contains(b.At) {
		t.Fatalf("created at %s and %s, outside the period %v", a.At, b.At, period)
	}
	if n := failed.Load(); n != 7 {
		t.Fatalf("%d calls, want 5 failures, one probe and the next job", n)
	}
	// (An idle lane may hold a slot for its next fetch: in flight, not used.)
	u := ledgerUsage(t, k, "default", pol)
	if u.Used-u.InFlight != 2 || u.Uncertain != 0 || u.Cap != 5 {
		t.Fatalf("ledger %+v, want what Braze says: used 2 of 5", u)
	}
}

// Must hold 4: Braze says it charged less than the ledger holds → the lane
// uses the freed slots in the same period; more → the ledger follows at once.
func TestLedgerFollowsBrazeBothWays(t *testing.T) {
	t.Parallel()
	down := quota.Policy{Cap: 5, Burst: 10, Period: 24 * time.Hour}
	up := quota.Policy{Cap: 10, Burst: 10, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{
		groups: map[string]quota.Policy{"down": down, "up": up},
		sim:    brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "key-down", Cap: 5}, {Key: "key-up", Cap: 10}}},
	})
	ctx := context.Background()
	kv, err := k.js.KeyValue(ctx, queue.LedgerBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Three slots wrongly held (say, leaked by a crash) that Braze never charged.
	if _, err := kv.Put(ctx, quota.Key("down", down.PeriodAt(time.Now())), []byte(`{"used":3}`)); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		k.publish("sendid.jobs.down", job("c1", fmt.Sprint("d", i), fmt.Sprint("d", i), "test.d"))
	}
	for id, r := range k.results.waitFinals(t, 5, 30*time.Second) {
		if r.Status != queue.StatusCreated || !down.PeriodAt(time.Now()).Contains(r.At) {
			t.Errorf("%s: %+v", id, r)
		}
	}
	if u := ledgerUsage(t, k, "down", down); u.Used-u.InFlight != 5 {
		t.Fatalf("down: ledger %+v, want 5 used as Braze says", u)
	}

	for i := range 2 {
		k.publish("sendid.jobs.up", job("c1", fmt.Sprint("u", i), fmt.Sprint("u", i), "test.u"))
	}
	k.results.waitFinals(t, 7, 30*time.Second)
	k.sim.SetUsed("key-up", 8) // another client spent six
	k.publish("sendid.jobs.up", job("c1", "u2", "u2", "test.u"))
	k.results.waitFinals(t, 8, 30*time.Second)
	if u := ledgerUsage(t, k, "up", up); u.Used-u.InFlight != 9 {
		t.Fatalf("up: ledger %+v after one answer, want Braze's 9", u)
	}
	k.publish("sendid.jobs.up", job("c1", "u3", "u3", "test.u"))
	k.publish("sendid.jobs.up", job("c1", "u4", "u4", "test.u"))
	k.results.waitFinals(t, 9, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	f := k.results.finals()
	if f["u3"].Status != queue.StatusCreated || len(f) != 9 {
		t.Fatalf("want u3 created and u4 waiting for the next period: %v", f)
	}
	if st := k.sim.Stats(); st.OverCap != 0 {
		t.Fatalf("Braze answered 429 %d times", st.OverCap)
	}
}

func ledgerUsage(t *testing.T, k *kit, group string, pol quota.Policy) quota.Usage {
	t.Helper()
	ctx := context.Background()
	kv, err := k.js.KeyValue(ctx, queue.LedgerBucket)
	if err != nil {
		t.Fatal(err)
	}
	pols := quota.NewPolicies(zaptest.NewLogger(t))
	pols.Set(group, pol)
	u, err := quota.NewKV(kv, pols, quota.SystemClock{}).Usage(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func publishN(k *kit, n int, prefix string) {
	for i := range n {
		id := fmt.Sprint(prefix, i)
		k.publish("sendid.jobs", job("c1", id, id, "test."+prefix))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
	}
}

var _ jetstream.KeyValue // the ledger bucket is read directly above

// Must hold 3: cap 100, a SIGHUP changes the timezone mid-day → at most 100
// grants in that Braze day; the new timezone rules from the next boundary.
func TestTimezoneReloadKeepsTheDay(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	clock := quota.NewFakeClock(start)
	utc := quota.Policy{Cap: 100, Burst: 100, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{
		groups: map[string]quota.Policy{"default": utc},
		sim:    brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "key-default", Cap: 1000}}, Now: clock.Now}, clock: clock,
	})
	publishN(k, 60, "a")
	k.results.waitFinals(t, 60, 30*time.Second)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	moved := utc
	moved.Location = berlin
	if err := k.w.Reload([]worker.Group{{Name: "default", Key: "key-default", Sender: k.client, Policy: moved}}); err != nil {
		t.Fatal(err)
	}
	publishN(k, 60, "b")
	k.results.waitFinals(t, 100, 30*time.Second)
	// Through Berlin's midnight (23:00 UTC) up to just before ours: the
	// lane looks at the ledger at least every two minutes, and is refused.
	for clock.Now().Before(time.Date(2026, 11, 27, 23, 58, 0, 0, time.UTC)) {
		clock.Advance(time.Minute)
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(k.results.finals()); n != 100 {
		t.Fatalf("%d jobs created in the UTC day of the reload, cap 100", n)
	}
	for range 5 {
		clock.Advance(time.Minute)
		time.Sleep(10 * time.Millisecond)
	}
	k.results.waitFinals(t, 120, 30*time.Second)
	day := map[string]int{}
	for _, r := range k.sim.Requests() {
		if r.Status == http.StatusCreated {
			day[r.At.UTC().Format("2006-01-02")]++
		}
	}
	if day["2026-11-27"] != 100 || day["2026-11-28"] != 20 {
		t.Fatalf("created per UTC day: %v", day)
	}
}
