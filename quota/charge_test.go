package quota_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sendid/sendid/quota"
)

func reserveN(t *testing.T, l quota.Ledger, n int) []quota.Slot {
	t.Helper()
	var out []quota.Slot
	for range n {
		s, err := l.Reserve(context.Background(), "g")
		if err != nil {
			t.Fatalf("reserve %d: %v", len(out)+1, err)
		}
		out = append(out, s)
	}
	return out
}

func usage(t *testing.T, l quota.Ledger) quota.Usage {
	t.Helper()
	u, err := l.Usage(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Braze's headers are the truth for the period, down as well as up, but
// never below the slots still in flight.
func TestLedgerFollowsBrazeAroundCallsInFlight(t *testing.T) {
	ledgers(t, day0, quota.Policy{Cap: 10, Burst: 1, Period: 24 * time.Hour}, func(t *testing.T, k ledgerKit, l quota.Ledger) {
		ctx := context.Background()
		s := reserveN(t, l, 3) // three calls in flight
		// The first is answered: Braze counts 1 in all.
		if err := l.Settle(ctx, s[0], quota.Observation{Known: true, Limit: 10, Remaining: 9}, false); err != nil {
			t.Fatal(err)
		}
		if u := usage(t, l); u.Used != 3 || u.InFlight != 2 {
			t.Fatalf("after one answer: %+v, want used 3 (1 charged + 2 in flight)", u)
		}
		// The second is answered and Braze still counts 1 (it charged less).
		// That header may be older than the one applied (with several calls
		// in flight, answers can be applied out of order): it only raises.
		_ = l.Settle(ctx, s[1], quota.Observation{Known: true, Limit: 10, Remaining: 9}, false)
		if u := usage(t, l); u.Used != 3 || u.InFlight != 1 {
			t.Fatalf("after an answer to an older slot: %+v, want used 3", u)
		}
		// The third never left.
		_ = l.Release(ctx, s[2])
		if u := usage(t, l); u.Used != 2 || u.InFlight != 0 {
			t.Fatalf("after a release: %+v, want used 2", u)
		}
		// The next call's answer says Braze charged 2 in all: the slot of
		// the uncharged second call is free again.
		s = reserveN(t, l, 1)
		_ = l.Settle(ctx, s[0], quota.Observation{Known: true, Limit: 10, Remaining: 8}, false)
		if u := usage(t, l); u.Used != 2 || u.InFlight != 0 {
			t.Fatalf("after Braze charged less: %+v, want used 2", u)
		}
		// Braze counts more (another client): the ledger follows up at once.
		s = reserveN(t, l, 1)
		_ = l.Settle(ctx, s[0], quota.Observation{Known: true, Limit: 10, Remaining: 3}, false)
		if u := usage(t, l); u.Used != 7 || u.Remaining != 3 {
			t.Fatalf("after Braze counted more: %+v, want used 7", u)
		}
		reserveN(t, l, 3)
		if _, err := l.Reserve(ctx, "g"); err == nil {
			t.Fatal("granted an eleventh slot")
		}
	})
}

// A configuration fault (401/403/404) is not charged by Braze: the slot
// comes back, however many probes the lane makes.
func TestLedgerReleaseOfConfigFaults(t *testing.T) {
	ledgers(t, day0, quota.Policy{Cap: 2, Burst: 1, Period: 24 * time.Hour}, func(t *testing.T, k ledgerKit, l quota.Ledger) {
		ctx := context.Background()
		for range 4 {
			s := reserveN(t, l, 1)
			if err := l.Release(ctx, s[0]); err != nil {
				t.Fatal(err)
			}
			if err := l.Sync(ctx, "g", quota.Observation{}); err != nil { // a 401 has no rate-limit headers
				t.Fatal(err)
			}
		}
		if u := usage(t, l); u.Used != 0 || u.InFlight != 0 {
			t.Fatalf("after four 401s: %+v", u)
		}
		reserveN(t, l, 2)
	})
}

// Five calls answered 503 without headers against a cap of 5: counted and
// uncertain; after the probe interval one probe is granted, and its
// headers settle the count.
func TestLedgerUncertainChargesAndProbe(t *testing.T) {
	pol := quota.Policy{Cap: 5, Burst: 1, Period: 24 * time.Hour, ProbeInterval: 5 * time.Minute}
	ledgers(t, day0, pol, func(t *testing.T, k ledgerKit, l quota.Ledger) {
		ctx := context.Background()
		for range 5 {
			s := reserveN(t, l, 1)
			if s[0].Probe {
				t.Fatal("a slot under the cap is not a probe")
			}
			if err := l.Settle(ctx, s[0], quota.Observation{}, true); err != nil {
				t.Fatal(err)
			}
		}
		if u := usage(t, l); u.Used != 5 || u.Uncertain != 5 || u.Remaining != 0 {
			t.Fatalf("after five 503s: %+v", u)
		}
		_, err := l.Reserve(ctx, "g")
		if until := exhaustedUntil(t, err); !until.Equal(day0.Add(5 * time.Minute)) {
			t.Fatalf("blocked until %s, want the next probe at %s", until, day0.Add(5*time.Minute))
		}
		k.clock.Advance(5 * time.Minute)
		s := reserveN(t, l, 1)
		if !s[0].Probe {
			t.Fatal("the slot beyond the cap is not marked a probe")
		}
		if _, err := l.Reserve(ctx, "g"); err == nil {
			t.Fatal("two probes in one interval")
		}
		// Braze charged only the probe.
		_ = l.Settle(ctx, s[0], quota.Observation{Known: true, Limit: 5, Remaining: 4}, false)
		if u := usage(t, l); u.Used != 1 || u.Uncertain != 0 {
			t.Fatalf("after the probe: %+v, want used 1, nothing uncertain", u)
		}
		reserveN(t, l, 4)
		_, err = l.Reserve(ctx, "g")
		if until := exhaustedUntil(t, err); !until.Equal(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("full period blocked until %s", until)
		}
	})
	t.Run("no probe past a lower configured cap", func(t *testing.T) {
		// Braze allows 100 but we cap at 5: Braze would accept a probe even
		// if all five uncertain calls were charged, so none is made.
		ledgers(t, day0, pol, func(t *testing.T, k ledgerKit, l quota.Ledger) {
			ctx := context.Background()
			s := reserveN(t, l, 1)
			_ = l.Settle(ctx, s[0], quota.Observation{Known: true, Limit: 100, Remaining: 99}, false)
			for _, s := range reserveN(t, l, 4) {
				_ = l.Settle(ctx, s, quota.Observation{}, true)
			}
			k.clock.Advance(time.Hour)
			_, err := l.Reserve(ctx, "g")
			if until := exhaustedUntil(t, err); !until.Equal(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)) {
				t.Fatalf("blocked until %s, want the period's end", until)
			}
		})
	})
	t.Run("429 settles", func(t *testing.T) {
		ledgers(t, day0, pol, func(t *testing.T, k ledgerKit, l quota.Ledger) {
			ctx := context.Background()
			for _, s := range reserveN(t, l, 5) {
				_ = l.Settle(ctx, s, quota.Observation{}, true)
			}
			k.clock.Advance(5 * time.Minute)
			s := reserveN(t, l, 1)
			// Braze had charged them all: the probe gets 429, which charges nothing.
			midnight := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
			_ = l.Release(ctx, s[0])
			_ = l.Sync(ctx, "g", quota.Observation{RateLimited: true, Known: true, Limit: 5, Remaining: 0, Reset: midnight})
			if u := usage(t, l); u.Used != 5 || u.Uncertain != 0 {
				t.Fatalf("after a 429: %+v", u)
			}
			k.clock.Advance(time.Hour)
			_, err := l.Reserve(ctx, "g")
			if until := exhaustedUntil(t, err); !until.Equal(midnight) {
				t.Fatalf("blocked until %s, want midnight", until)
			}
		})
	})
}

// Every replica enforces the cap configured most recently on any of them:
// it lives in the shared record.
func TestKVNewestCapRulesEveryReplica(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	clock := quota.NewFakeClock(day0)
	var pols [2]*quota.Policies
	var ls [2]*quota.KV
	for i := range ls {
		pols[i] = quota.NewPolicies(zaptest.NewLogger(t)).UseClock(clock)
		pols[i].Set("g", quota.Policy{Cap: 100, Burst: 1, Period: 24 * time.Hour})
		_, js := s.Connect()
		ls[i] = quota.NewKV(openBucket(t, js), pols[i], clock)
	}
	ctx := context.Background()
	grant := func(i int) bool { _, err := ls[i].Reserve(ctx, "g"); return err == nil }
	for range 10 {
		grant(0)
	}
	clock.Advance(time.Minute)
	pols[1].Set("g", quota.Policy{Cap: 20, Burst: 1, Period: 24 * time.Hour}) // SIGHUP on replica 1 only
	n := 0
	for i := 0; i < 200 && grant(i%2); i++ {
		n++
	}
	if u, _ := ls[0].Usage(ctx, "g"); n != 10 || u.Cap != 20 || u.Used != 20 {
		t.Fatalf("after replica 1 lowered the cap to 20: %d more grants, usage %+v", n, u)
	}
	clock.Advance(time.Minute)
	pols[0].Set("g", quota.Policy{Cap: 30, Burst: 1, Period: 24 * time.Hour}) // newer still, on replica 0
	n = 0
	for i := 0; i < 200 && grant(i%2); i++ { // from replica 0's first grant on, both enforce 30
		n++
	}
	if u, _ := ls[1].Usage(ctx, "g"); n != 10 || u.Cap != 30 {
		t.Fatalf("after replica 0 raised the cap to 30: %d more grants, usage %+v", n, u)
	}
}

// A SIGHUP that changes the timezone mid-day keeps the day's count: the
// change takes effect at the end of the current period (logged with that
// time), so Braze's UTC day sees at most the cap.
func TestLedgerTimezoneReloadKeepsTheDay(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	midnight := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	ledgers(t, day0.Add(time.Hour), quota.Policy{Cap: 100, Burst: 1, Period: 24 * time.Hour}, func(t *testing.T, k ledgerKit, l quota.Ledger) {
		ctx := context.Background()
		grants := map[time.Time]int{} // Braze's UTC day → grants
		take := func(n int) int {
			got := 0
			for range n {
				if _, err := l.Reserve(ctx, "g"); err != nil {
					break
				}
				got++
				grants[k.clock.Now().UTC().Truncate(24*time.Hour)]++
			}
			return got
		}
		take(60)
		k.pols.Set("g", quota.Policy{Cap: 100, Burst: 1, Period: 24 * time.Hour, Location: berlin})
		logged := k.logs.FilterMessageSnippet("takes effect at the next period boundary").All()
		if len(logged) != 1 {
			t.Fatalf("the change was logged %d times", len(logged))
		}
		if at, _ := logged[0].ContextMap()["takes_effect"].(time.Time); !at.Equal(midnight) {
			t.Errorf("logged to take effect at %v, want %s", logged[0].ContextMap()["takes_effect"], midnight)
		}
		take(200)
		k.clock.Set(midnight.Add(-30 * time.Minute)) // Berlin's midnight has passed; ours has not
		take(200)
		if grants[day0.Truncate(24*time.Hour)] != 100 {
			t.Fatalf("Braze's day saw %d grants, want 100", grants[day0.Truncate(24*time.Hour)])
		}
		k.clock.Set(midnight)
		if n := take(200); n != 100 {
			t.Fatalf("the next period granted %d", n)
		}
		pol, _ := k.pols.Get("g")
		if per := pol.PeriodAt(midnight); !per.Start.Equal(midnight) || !per.End.Equal(time.Date(2026, 11, 28, 23, 0, 0, 0, time.UTC)) {
			t.Fatalf("first Berlin period [%s, %s)", per.Start, per.End)
		}
		if per := pol.PeriodAt(midnight.Add(23 * time.Hour)); !per.Start.Equal(time.Date(2026, 11, 29, 0, 0, 0, 0, berlin)) {
			t.Fatalf("second Berlin period starts %s", per.Start)
		}
	})
}

// A lease is handed out only after the shared record is read: a block
// written by another replica, or a cap lowered there, stops it.
func TestKVLeaseRechecksTheRecord(t *testing.T) {
	t.Parallel()
	fast := quota.Policy{Cap: 2000, Burst: 100, Period: time.Second} // leases of 32
	for _, tc := range []struct {
		name  string
		other func(ctx context.Context, pols *quota.Policies, l *quota.KV)
	}{
		{"block", func(ctx context.Context, _ *quota.Policies, l *quota.KV) {
			_ = l.Sync(ctx, "fast", quota.Observation{RateLimited: true, Reset: day0.Add(time.Second)})
		}},
		{"lower cap", func(ctx context.Context, pols *quota.Policies, l *quota.KV) {
			pols.Set("fast", quota.Policy{Cap: 1, Burst: 1, Period: time.Second})
			_, _ = l.Reserve(ctx, "fast")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t)
			clock := quota.NewFakeClock(day0.Add(100 * time.Millisecond))
			var pols [2]*quota.Policies
			var ls [2]*quota.KV
			for i := range ls {
				pols[i] = quota.NewPolicies(zaptest.NewLogger(t)).UseClock(clock)
				pols[i].Set("fast", fast)
				_, js := s.Connect()
				ls[i] = quota.NewKV(openBucket(t, js), pols[i], clock)
			}
			ctx := context.Background()
			if _, err := ls[0].Reserve(ctx, "fast"); err != nil { // leases 32
				t.Fatal(err)
			}
			clock.Advance(time.Millisecond)
			tc.other(ctx, pols[1], ls[1])
			if _, err := ls[0].Reserve(ctx, "fast"); err == nil {
				t.Fatal("a leased slot was handed out past the other replica's " + tc.name)
			}
			if u, _ := ls[1].Usage(ctx, "fast"); u.InFlight > 2 {
				t.Fatalf("the void lease was not given back: %+v", u)
			}
		})
	}
}

// The KV ledger and the memory ledger agree after releases, settles and
// syncs in every order (the KV ledger has no shortcut that skips a write).
func TestKVAgreesWithMemoryInEveryOrder(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	pol := quota.Policy{Cap: 10, Burst: 1, Period: 24 * time.Hour}
	obsA := quota.Observation{Known: true, Limit: 10, Remaining: 8}
	obsB := quota.Observation{Known: true, Limit: 10, Remaining: 9}
	type op func(ctx context.Context, l quota.Ledger, slots []quota.Slot)
	ops := []op{
		func(ctx context.Context, l quota.Ledger, s []quota.Slot) { _ = l.Release(ctx, s[0]) },
		func(ctx context.Context, l quota.Ledger, s []quota.Slot) { _ = l.Settle(ctx, s[1], obsA, false) },
		func(ctx context.Context, l quota.Ledger, s []quota.Slot) { _ = l.Sync(ctx, "g", obsB) },
		func(ctx context.Context, l quota.Ledger, s []quota.Slot) {
			_ = l.Settle(ctx, s[2], quota.Observation{}, true)
		},
	}
	perms := [][]int{}
	var permute func(p []int, k int)
	permute = func(p []int, k int) {
		if k == len(p) {
			perms = append(perms, append([]int(nil), p...))
			return
		}
		for i := k; i < len(p); i++ {
			p[k], p[i] = p[i], p[k]
			permute(p, k+1)
			p[k], p[i] = p[i], p[k]
		}
	}
	permute([]int{0, 1, 2, 3}, 0)
	_, js := s.Connect()
	bucket := openBucket(t, js)
	for n, order := range perms {
		clock := quota.NewFakeClock(day0.Add(time.Duration(n) * 24 * time.Hour)) // a fresh period each
		core, _ := observer.New(zap.InfoLevel)
		pols := quota.NewPolicies(zap.New(core)).UseClock(clock)
		pols.Set("g", pol)
		mem, kv := quota.NewMemory(pols, clock), quota.NewKV(bucket, pols, clock)
		ctx := context.Background()
		for _, l := range []quota.Ledger{mem, kv} {
			slots := reserveN(t, l, 3)
			for _, i := range order {
				ops[i](ctx, l, slots)
			}
		}
		um, _ := mem.Usage(ctx, "g")
		uk, _ := kv.Usage(ctx, "g")
		if um != uk {
			t.Errorf("order %v: memory %+v, kv %+v", order, um, uk)
		}
	}
}
