package quota_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/quota"
)

func startServer(t testing.TB) *natstest.Server { return natstest.Start(t) }

func ledgerBucket(t testing.TB, s *natstest.Server) jetstream.KeyValue {
	t.Helper()
	_, js := s.Connect()
	return openBucket(t, js)
}

func openBucket(t testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{
		Bucket: "SENDID_LEDGER", History: 1, TTL: 72 * time.Hour, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// TestKVExactGrants: 8 goroutines over 2 connections against one bucket with
// cap 100 get exactly 100 grants.
func TestKVExactGrants(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	pols := quota.NewPolicies(zaptest.NewLogger(t))
	pols.Set("g", quota.Policy{Cap: 100, Burst: 100, Period: 24 * time.Hour})
	var ledgers [2]*quota.KV
	for i := range ledgers {
		_, js := s.Connect()
		ledgers[i] = quota.NewKV(openBucket(t, js), pols, quota.SystemClock{})
	}
	var granted, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			l := ledgers[w%2]
			for range 30 {
				_, err := l.Reserve(context.Background(), "g")
				var ex *quota.Exhausted
				switch {
				case err == nil:
					granted.Add(1)
				case errors.As(err, &ex):
					refused.Add(1)
				default:
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if granted.Load() != 100 || refused.Load() != 140 {
		t.Fatalf("granted %d refused %d, want 100 and 140", granted.Load(), refused.Load())
	}
	u, err := ledgers[0].Usage(context.Background(), "g")
	if err != nil || u.Used != 100 || u.Remaining != 0 {
		t.Fatalf("usage %+v %v", u, err)
	}
}

// TestKVSurvivesServerRestart: a ledger reopened after the server restarts
// on the same store continues its count.
func TestKVSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	pols := quota.NewPolicies(zaptest.NewLogger(t))
	pols.Set("g", quota.Policy{Cap: 10, Burst: 1, Period: 24 * time.Hour})
	clock := quota.NewFakeClock(day0)
	l := quota.NewKV(ledgerBucket(t, s), pols, clock)
	for range 7 {
		if _, err := l.Reserve(context.Background(), "g"); err != nil {
			t.Fatal(err)
		}
	}
	s.Restart()
	l2 := quota.NewKV(ledgerBucket(t, s), pols, clock)
	u, err := l2.Usage(context.Background(), "g")
	if err != nil || u.Used != 7 {
		t.Fatalf("after restart: %+v %v", u, err)
	}
	grants := 0
	for range 10 {
		if _, err := l2.Reserve(context.Background(), "g"); err == nil {
			grants++
		}
	}
	if grants != 3 {
		t.Fatalf("%d grants after restart, want 3", grants)
	}
}

// BenchmarkKVReserve measures reserve throughput against an embedded server
// (one client; the cap is never reached): one compare-and-swap per slot (a
// group slower than 20 calls/s) and leased (a fast group).
func BenchmarkKVReserve(b *testing.B) {
	for _, bc := range []struct {
		name string
		pol  quota.Policy
	}{
		{"cas-per-slot", quota.Policy{Cap: 1_000_000, Burst: 1, Period: 24 * time.Hour}},
		{"leased", quota.Policy{Cap: 100_000_000, Burst: 1, Period: time.Second}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := startServer(b)
			pols := quota.NewPolicies(zaptest.NewLogger(b))
			pols.Set("g", bc.pol)
			l := quota.NewKV(ledgerBucket(b, s), pols, quota.NewFakeClock(day0))
			ctx := context.Background()
			for b.Loop() {
				if _, err := l.Reserve(ctx, "g"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reserves/s")
		})
	}
}

// TestKVLeasesNeverOverGrant: a fast group reserves slots in leases; two
// ledgers (replicas) together still never grant more than the cap, and
// leave at most a lease each unused.
func TestKVLeasesNeverOverGrant(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	pols := quota.NewPolicies(zaptest.NewLogger(t))
	pols.Set("fast", quota.Policy{Cap: 2000, Burst: 100, Period: time.Second}) // 2000/s: leases of 32
	clock := quota.NewFakeClock(day0)
	var ledgers [2]*quota.KV
	for i := range ledgers {
		_, js := s.Connect()
		ledgers[i] = quota.NewKV(openBucket(t, js), pols, clock)
	}
	var granted atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 1; i <= 10_000; i++ { // bounded; the cap ends it far sooner
				slot, err := ledgers[w%2].Reserve(context.Background(), "fast")
				if err != nil {
					return
				}
				if i%10 == 0 { // some calls never left: give them back
					_ = ledgers[w%2].Release(context.Background(), slot)
					continue
				}
				granted.Add(1)
			}
		})
	}
	wg.Wait()
	if g := granted.Load(); g > 2000 || g < 2000-2*31 {
		t.Fatalf("granted %d of a cap of 2000", g)
	}
	u, _ := ledgers[0].Usage(context.Background(), "fast")
	if u.Used != 2000 {
		t.Fatalf("ledger used %d", u.Used)
	}
}
