package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// refusingLedger refuses one reservation, the refuse-th (1-based), as an
// exhausted period that ends a moment later.
type refusingLedger struct {
	quota.Ledger
	refuse int64
	n      atomic.Int64
}

func (l *refusingLedger) Reserve(ctx context.Context, g string) (quota.Slot, error) {
	if l.n.Add(1) == l.refuse {
		return quota.Slot{}, &quota.Exhausted{Group: g, Until: time.Now().Add(200 * time.Millisecond)}
	}
	return l.Ledger.Reserve(ctx, g)
}

// On a lane whose last reservation was granted, a first delivery takes its
// slot, its pair reservation and its job record at once. When the slot is
// refused, the records it created are undone: the job runs after the pause
// as a fresh call, not as a call in doubt, and nothing is left behind.
func TestOpenTogetherUndoneWhenRefused(t *testing.T) {
	t.Parallel()
	led := &refusingLedger{refuse: 2}
	k := newKit(t, kitOptions{ledger: func(l quota.Ledger) quota.Ledger { led.Ledger = l; return led }})
	k.publish("sendid.jobs", job("c", "s-1", "first", "test.r"))
	k.results.waitFinals(t, 1, 15*time.Second)
	k.publish("sendid.jobs", job("c", "s-2", "second", "test.r"))
	finals := k.results.waitFinals(t, 2, 20*time.Second)
	r := finals["second"]
	if r.Status != queue.StatusCreated || r.InDoubt || r.Attempts != 1 {
		t.Fatalf("second job: %+v (want created, not in doubt, 1 attempt)", r)
	}
	if led.n.Load() < 3 {
		t.Fatalf("%d reservations: the refusal was not reached", led.n.Load())
	}
	if n := len(k.sim.Requests()); n != 2 {
		t.Fatalf("%d Braze calls, want 2", n)
	}
}

// A first delivery whose pair another job created, on a lane taking its
// records at once: the job record it created is undone, and the redelivery
// answers from the pair's record without a call and without doubt.
func TestOpenTogetherPairTaken(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	k.publish("sendid.jobs", job("c", "s-1", "a", "test.p"))
	first := k.results.waitFinals(t, 1, 15*time.Second)["a"]
	// Straight onto the FIFO: admission would have answered it from the
	// pair's record.
	k.publish(k.subj.Ready("default"), job("c", "s-1", "b", "test.p"))
	r := k.results.waitFinals(t, 2, 15*time.Second)["b"]
	if r.Status != queue.StatusCreated || !r.Duplicate || r.InDoubt || r.SendID != first.SendID {
		t.Fatalf("b: %+v (want created duplicate of %q, not in doubt)", r, first.SendID)
	}
	if n := len(k.sim.Requests()); n != 1 {
		t.Fatalf("%d Braze calls, want 1", n)
	}
	rec, _, err := k.records().Job(context.Background(), "default", "b")
	if err != nil || rec.Final == nil || rec.Calling != 0 || rec.InDoubt {
		t.Fatalf("b's record: %+v, %v", rec, err)
	}
}

// A first delivery whose id is taken, on a lane taking its records at once:
// the pair reservation it took is undone and the redelivery answers from
// the id's stored result without a call.
func TestOpenTogetherIDTaken(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	k.publish("sendid.jobs", job("c", "s-1", "warm", "test.i"))
	k.results.waitFinals(t, 1, 15*time.Second)
	ctx := context.Background()
	rs := k.records()
	storeCreatedDup(t, k) // firstdelivery_test.go
	k.publish(k.subj.Ready("default"), job("c", "fresh", "dup", "test.i"))
	r := k.results.waitFinals(t, 2, 15*time.Second)["dup"]
	if r.Status != queue.StatusCreated || r.SendID != "s-old" || !r.Duplicate {
		t.Fatalf("%+v", r)
	}
	if n := len(k.sim.Requests()); n != 1 {
		t.Fatalf("%d Braze calls, want 1", n)
	}
	if _, rev, err := rs.Pair(ctx, "default", "c", "fresh"); err != nil || rev != 0 {
		t.Fatalf("pair reservation left behind: rev %d, %v", rev, err)
	}
}
