package quota_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sendid/sendid/quota"
)

// A ledger changes a record starting from what it last saw, without a
// read: when another replica wrote it meanwhile, the swap fails and the
// record is read again, so no grant is counted on a stale record.
func TestKVRemembersRecordsButNeverGrantsOnAStaleOne(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	pols := quota.NewPolicies(zaptest.NewLogger(t))
	pols.Set("g", quota.Policy{Cap: 2, Burst: 2, Period: 24 * time.Hour})
	var a, b *quota.KV
	for _, l := range []**quota.KV{&a, &b} {
		_, js := s.Connect()
		*l = quota.NewKV(openBucket(t, js), pols, quota.SystemClock{})
	}
	ctx := context.Background()
	slot, err := a.Reserve(ctx, "g") // a remembers used 1
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Settle(ctx, slot, quota.Observation{}, false); err != nil { // from memory: one swap
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, "g"); err != nil { // used 2, a does not know
		t.Fatal(err)
	}
	_, err = a.Reserve(ctx, "g")
	var ex *quota.Exhausted
	if !errors.As(err, &ex) {
		t.Fatalf("third reservation over a cap of 2: %v", err)
	}
	u, err := b.Usage(ctx, "g")
	if err != nil || u.Used != 2 {
		t.Fatalf("usage %+v %v", u, err)
	}
}
