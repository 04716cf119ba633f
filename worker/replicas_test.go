package worker_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// replica is a second worker on the kit's server, simulator and buckets,
// with its own connection, ledger handle, pacer and policies: what another
// process would have.
type replica struct {
	w    *worker.Worker
	stop context.CancelFunc
	done chan error
}

func (k *kit) replica(o kitOptions) *replica {
	t := k.t
	t.Helper()
	nc, js := k.ns.Connect()
	ctx := context.Background()
	b, err := queue.EnsureBuckets(ctx, js, queue.BucketSettings{Replicas: 1, LedgerTTL: time.Hour, JobRecordTTL: time.Hour, PairTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	client, err := braze.New(k.sim.URL, braze.WithHTTPClient(&http.Client{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	var groups []worker.Group
	for name, pol := range o.groups {
		groups = append(groups, worker.Group{Name: name, Key: braze.Key("key-" + name), Sender: client, Policy: pol})
	}
	log := zaptest.NewLogger(t).Named("replica")
	pols := quota.NewPolicies(log)
	w, err := worker.New(worker.Options{
		NC: nc, JS: js, Subjects: k.subj, Records: queue.NewRecords(b.Jobs, b.Pairs),
		Publisher: queue.NewPublisher(nc, js, k.subj, true), Ledger: quota.NewKV(b.Ledger, pols, quota.SystemClock{}),
		Pacer: quota.NewPacer(quota.SystemClock{}), Policies: pols, Log: log,
		MaxAttempts: o.maxAttempts, RetryBackoff: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, RecheckInterval: 2 * time.Second, LaneFailover: o.failover,
	}, groups)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{w: w, done: make(chan error, 1)}
	var runCtx context.Context
	runCtx, r.stop = context.WithCancel(context.Background())
	go func() { r.done <- w.Run(runCtx) }()
	t.Cleanup(func() { r.halt(t) })
	return r
}

// halt stops the replica and waits for it (once).
func (r *replica) halt(t *testing.T) {
	t.Helper()
	if r.done == nil {
		return
	}
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("replica: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("replica did not stop within 15s")
	}
	r.done = nil
}

// TestReplicasShareOneLane: two replicas work one group as one worker. One
// owns the group; when it stops, the other takes over and continues the
// same pacer bucket. Calls at the simulator keep the pacing interval
// (within 10%), never exceed the cap, and keep the publish order.
//
// "cap 40 per 40s" is the case: with a pacer per replica, or both
// replicas pulling, calls would come closer together. "cap 10 per 40s"
// paces slower than the failover time, so the handover itself would come
// early unless the new owner continues the old owner's bucket.
func TestReplicasShareOneLane(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pol   quota.Policy
		jobs  int
		first int // jobs finished before the owner stops
	}{
		{"cap 40 per 40s", quota.Policy{Cap: 40, Burst: 1, Period: 40 * time.Second}, 8, 3},
		{"cap 10 per 40s", quota.Policy{Cap: 10, Burst: 1, Period: 40 * time.Second}, 4, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := kitOptions{
				groups:   map[string]quota.Policy{"default": tc.pol},
				sim:      brazetest.Options{DefaultCap: tc.pol.Cap, DefaultPeriod: tc.pol.Period},
				failover: time.Second,
			}
			k := newKit(t, o)
			writes := countLedgerWrites(t, k, "default")
			a := &replica{w: k.w, stop: k.stop, done: k.done}
			b := k.replica(o)
			for i := range tc.jobs {
				k.publish("sendid.jobs", job("c", fmt.Sprintf("s%02d", i), fmt.Sprintf("j%02d", i), "test.r"))
			}
			k.results.waitFinals(t, tc.first, time.Duration(tc.first+2)*tc.pol.Interval()+10*time.Second)
			var owner, other *replica
			deadline := time.Now().Add(10 * time.Second)
			for owner == nil {
				switch oa, ob := a.w.Owns("default"), b.w.Owns("default"); {
				case oa && !ob:
					owner, other = a, b
				case ob && !oa:
					owner, other = b, a
				case time.Now().After(deadline):
					t.Fatal("no single owner")
				default:
					time.Sleep(5 * time.Millisecond)
				}
			}
			owner.halt(t)
			if owner == a {
				k.done <- nil // the kit's cleanup waits for its worker once more
			}
			deadline = time.Now().Add(tc.pol.Interval() + 20*time.Second)
			for !other.w.Owns("default") {
				if time.Now().After(deadline) {
					t.Fatal("the other replica did not take the group over")
				}
				time.Sleep(5 * time.Millisecond)
			}
			finals := k.results.waitFinals(t, tc.jobs, time.Duration(tc.jobs+2)*tc.pol.Interval()+20*time.Second)
			for id, r := range finals {
				if r.Status != queue.StatusCreated {
					t.Errorf("%s: %+v", id, r)
				}
			}
			reqs := k.sim.Requests()
			sort.Slice(reqs, func(i, j int) bool { return reqs[i].At.Before(reqs[j].At) })
			if len(reqs) != tc.jobs {
				t.Fatalf("%d calls for %d jobs", len(reqs), tc.jobs)
			}
			least, smallest := tc.pol.Interval()*9/10, time.Duration(1<<62)
			for i, r := range reqs {
				if want := fmt.Sprintf("s%02d", i); r.SendID != want {
					t.Errorf("call %d is %s, want %s (publish order)", i, r.SendID, want)
				}
				if i > 0 {
					gap := r.At.Sub(reqs[i-1].At)
					if gap < least {
						t.Errorf("calls %d and %d only %s apart, want >= %s", i-1, i, gap, least)
					}
					smallest = min(smallest, gap)
				}
			}
			st := k.sim.Stats()
			for per, n := range st.CallsPerPeriod {
				if n > tc.pol.Cap {
					t.Errorf("%d calls in %s, cap %d", n, per, tc.pol.Cap)
				}
			}
			if st.OverCap != 0 {
				t.Errorf("%d calls over the cap", st.OverCap)
			}
			// A reservation and a settlement per call, and rarely another
			// write: the replica that does not own the group reserves
			// nothing (with a reservation per pull it would add a reserve
			// and a release twice a second).
			n := writes()
			if n > 3*tc.jobs {
				t.Errorf("%d ledger writes for %d calls", n, tc.jobs)
			}
			t.Logf("%d calls, smallest gap %s, %d ledger writes", len(reqs), smallest.Round(time.Millisecond), n)
		})
	}
}

// countLedgerWrites counts the writes to group's ledger records from now.
func countLedgerWrites(t *testing.T, k *kit, group string) func() int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kv, err := k.js.KeyValue(ctx, queue.LedgerBucket)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := kv.Watch(ctx, group+".*", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wt.Stop() })
	var (
		mu sync.Mutex
		n  int
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range wt.Updates() {
			if e != nil {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}
