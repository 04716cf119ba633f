package worker_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// turningLedger hands out, as the n-th reservation (1-based, turnAt), a
// real slot dressed as one of a period that has already ended, so the lane
// takes the "period turned" branch of execute; the reservations after it
// answer script[0], script[1], … (nil: a real slot). Releasing the dressed
// slot gives the real one back, so the ledger still matches.
type turningLedger struct {
	quota.Ledger
	turnAt int
	script []func(ctx context.Context, g string) (quota.Slot, error)

	mu     sync.Mutex
	n      int
	real   quota.Slot
	fake   quota.Period
	dressd bool
}

func (l *turningLedger) Reserve(ctx context.Context, g string) (quota.Slot, error) {
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	switch {
	case n == l.turnAt:
		s, err := l.Ledger.Reserve(ctx, g)
		if err != nil {
			return s, err
		}
		now := time.Now()
		l.mu.Lock()
		l.real, l.fake, l.dressd = s, quota.Period{Start: now.Add(-2 * time.Hour), End: now.Add(-time.Hour)}, true
		l.mu.Unlock()
		d := s
		d.Period = l.fake
		return d, nil
	case n > l.turnAt && n-l.turnAt-1 < len(l.script) && l.script[n-l.turnAt-1] != nil:
		return l.script[n-l.turnAt-1](ctx, g)
	}
	return l.Ledger.Reserve(ctx, g)
}

func (l *turningLedger) Release(ctx context.Context, s quota.Slot) error {
	l.mu.Lock()
	if l.dressd && s.Period == l.fake {
		s = l.real
		l.dressd = false
	}
	l.mu.Unlock()
	return l.Ledger.Release(ctx, s)
}

func (l *turningLedger) reservations() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func callsFor(k *kit, sendID string) int {
	n := 0
	for _, r := range k.sim.Requests() {
		if r.SendID == sendID {
			n++
		}
	}
	return n
}

// Review of aa81b54: the first delivery of "second" is opened together
// (its job record says Attempts 1, Calling 1). Its slot turns out to be of
// an ended period, so execute gives it back and reserves again, and that
// reservation is refused (exhausted). putBack returns the job without
// undoing what openTogether wrote: the redelivery finds a call open that
// never started and, under in_doubt: fail, ends the job outcome_unknown
// without ever calling Braze for it.
func TestOpenTogetherPeriodTurnRefusedLeavesFalseDoubt(t *testing.T) {
	t.Parallel()
	exhausted := func(ctx context.Context, g string) (quota.Slot, error) {
		return quota.Slot{}, &quota.Exhausted{Group: g, Until: time.Now().Add(200 * time.Millisecond)}
	}
	led := &turningLedger{turnAt: 2, script: []func(context.Context, string) (quota.Slot, error){exhausted}}
	k := newKit(t, kitOptions{
		ledger:  func(l quota.Ledger) quota.Ledger { led.Ledger = l; return led },
		inDoubt: map[string]worker.InDoubtPolicy{"default": worker.InDoubtFail},
	})
	k.publish(k.subj.Ready("default"), job("c", "s-1", "first", "test.t"))
	k.results.waitFinals(t, 1, 15*time.Second)
	k.publish(k.subj.Ready("default"), job("c", "s-2", "second", "test.t"))
	r := k.results.waitFinals(t, 2, 20*time.Second)["second"]
	if led.reservations() < 3 {
		t.Fatalf("%d reservations: the refused one after the turn was not reached", led.reservations())
	}
	if r.Status != queue.StatusCreated || r.InDoubt {
		t.Errorf("second: status %s, in_doubt %v, error %+v, attempts %d; want created, not in doubt (no call had started)",
			r.Status, r.InDoubt, r.Error, r.Attempts)
	}
	if n := callsFor(k, "s-2"); n != 1 {
		t.Errorf("%d Braze calls for s-2, want 1", n)
	}
	// The false doubt also poisons the pair: under in_doubt: fail the
	// reservation stays, so a later job for the never-sent pair is refused
	// too (until pair_ttl) — the send is lost, not merely mislabelled.
	k.publish("sendid.jobs", job("c", "s-2", "third", "test.t"))
	r3 := k.results.waitFinals(t, 3, 20*time.Second)["third"]
	if r3.Status != queue.StatusCreated {
		t.Errorf("third (same pair, never sent): status %s, in_doubt %v, error %+v; want created", r3.Status, r3.InDoubt, r3.Error)
	}
}

// Review of aa81b54: as above, but the reservation after the period turn
// waits (as for the pacer's token) and the worker is shut down meanwhile —
// a clean SIGTERM, no crash. execute puts the job back without undoing the
// open-call marker openTogether wrote, so the replica that takes the group
// over reports a call that never started in doubt (in_doubt: true,
// sendid_jobs_in_doubt_total).
func TestOpenTogetherShutdownAfterPeriodTurnLeavesFalseDoubt(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	var once sync.Once
	waitForShutdown := func(ctx context.Context, g string) (quota.Slot, error) {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		return quota.Slot{}, ctx.Err()
	}
	led := &turningLedger{turnAt: 2, script: []func(context.Context, string) (quota.Slot, error){waitForShutdown}}
	groups := map[string]quota.Policy{"default": {Cap: 100, Burst: 10, Period: 24 * time.Hour}}
	k := newKit(t, kitOptions{groups: groups, ledger: func(l quota.Ledger) quota.Ledger { led.Ledger = l; return led }})
	k.publish(k.subj.Ready("default"), job("c", "s-1", "first", "test.s"))
	k.results.waitFinals(t, 1, 15*time.Second)
	k.publish(k.subj.Ready("default"), job("c", "s-2", "second", "test.s"))
	select {
	case <-entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the reservation after the period turn was not reached")
	}
	k.stop()
	select {
	case err := <-k.done:
		k.done <- err // for the kit's cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("worker did not stop")
	}
	if n := callsFor(k, "s-2"); n != 0 {
		t.Fatalf("%d calls for s-2 before the shutdown, want 0", n)
	}
	rec, _, err := k.records().Job(context.Background(), "default", "second")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Calling != 0 {
		t.Errorf("after a clean shutdown before any call, second's record still marks a call open: %+v", rec)
	}
	k.replica(kitOptions{groups: groups})
	r := k.results.waitFinals(t, 2, 20*time.Second)["second"]
	if r.Status != queue.StatusCreated || r.InDoubt {
		t.Errorf("second: status %s, in_doubt %v, attempts %d; want created, not in doubt", r.Status, r.InDoubt, r.Attempts)
	}
}

// pacedOnce answers the n-th reservation (1-based) with *quota.Paced for
// 10 minutes, as the ledger does when the group's shared bucket is empty
// (another replica spent its tokens): reserve then sleeps until then.
type pacedOnce struct {
	quota.Ledger
	at      int64
	n       atomic.Int64
	entered chan struct{}
}

func (l *pacedOnce) Reserve(ctx context.Context, g string) (quota.Slot, error) {
	if l.n.Add(1) == l.at {
		close(l.entered)
		return quota.Slot{}, &quota.Paced{Group: g, Until: time.Now().Add(10 * time.Minute)}
	}
	return l.Ledger.Reserve(ctx, g)
}

// Review of aa81b54: openTogether writes the open-call marker (Attempts 1,
// Calling 1) and the pair reservation before the slot is granted, and keeps
// them through the whole reservation: its round trip and any wait in it
// (a *quota.Paced bucket is waited out inside reserve, up to period/cap —
// 14.4 min for the default 100 per day). A crash of the owner anywhere in
// it — no call started — leaves a call "in doubt": the replica that takes
// over reports in_doubt: true and counts an attempt that never happened
// (under in_doubt: fail it would end the job outcome_unknown without a
// call). Before the change nothing was written before the slot; README
// ("Crash safety and calls in doubt") documents the window as the whole
// call, and only open.go's comment mentions this one (as "between a
// refusal and its undo"). The crash is simulated by closing the owner's
// NATS connection while its reservation waits.
func TestOpenTogetherCrashDuringReservationIsNotInDoubt(t *testing.T) {
	t.Parallel()
	led := &pacedOnce{at: 2, entered: make(chan struct{})}
	groups := map[string]quota.Policy{"default": {Cap: 100, Burst: 10, Period: 24 * time.Hour}}
	k := newKit(t, kitOptions{groups: groups, failover: time.Second, ledger: func(l quota.Ledger) quota.Ledger { led.Ledger = l; return led }})
	nc2, js2 := k.ns.Connect()
	results := collect(t, nc2, "test.>", "sendid.results.>")
	rs, err := queue.OpenRecords(context.Background(), js2)
	if err != nil {
		t.Fatal(err)
	}
	k.publish(k.subj.Ready("default"), job("c", "s-1", "first", "test.k"))
	results.waitFinals(t, 1, 15*time.Second)
	k.publish(k.subj.Ready("default"), job("c", "s-2", "second", "test.k"))
	select {
	case <-led.entered:
	case <-time.After(15 * time.Second):
		t.Fatal("second's reservation was not reached")
	}
	// Whatever openTogether writes next to the reservation is written by
	// now or within a moment; give it a bounded moment, then crash.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, rev, err := rs.Job(context.Background(), "default", "second"); err == nil && rev != 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The crash must fall while the reservation waits, not in the round
	// trip that took the records or before their undo (README: a crash
	// there reports the job in doubt): wait for the record to be gone
	// again. Without an undo it never goes, and the crash follows anyway.
	for time.Now().Before(deadline.Add(3 * time.Second)) {
		if _, rev, err := rs.Job(context.Background(), "default", "second"); err == nil && rev == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := callsFor(k, "s-2"); n != 0 {
		t.Fatalf("%d calls for s-2 while its reservation waits, want 0", n)
	}
	k.nc.Close() // the owner dies while its reservation waits
	k.replica(kitOptions{groups: groups, failover: time.Second})
	r := results.waitFinals(t, 2, 20*time.Second)["second"]
	if r.Status != queue.StatusCreated || r.InDoubt || r.Attempts != 1 {
		t.Errorf("second: status %s, in_doubt %v, attempts %d; want created, not in doubt, 1 attempt (the dead owner never called)",
			r.Status, r.InDoubt, r.Attempts)
	}
	if n := callsFor(k, "s-2"); n != 1 {
		t.Errorf("%d calls for s-2, want 1", n)
	}
}
