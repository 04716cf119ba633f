package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// records opens the kit's record buckets, for injecting records.
func (k *kit) records() *queue.Records {
	k.t.Helper()
	r, err := queue.OpenRecords(context.Background(), k.js)
	if err != nil {
		k.t.Fatal(err)
	}
	return r
}

// goneSeq is a stream sequence no message of the test ever has.
const goneSeq = 1 << 40

// Issue 10 #5 / issue 16: the same job id in two app groups gets each
// group's own result, created with each group's key; a stuck record of the
// id in one group does not hold the other group's job.
func TestSameIDInTwoGroups(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{groups: map[string]quota.Policy{"a": pol, "b": pol, "c": pol}})
	// Group c holds order-1 for a live-looking owner that never finishes:
	// a and b must not see it.
	if _, err := k.records().PutJob(context.Background(), queue.JobRecord{ID: "order-1", AppGroup: "c", Owner: goneSeq}, 0); err != nil {
		t.Fatal(err)
	}
	k.publish("sendid.jobs.a", job("ca", "sa", "order-1", "test.a"))
	fa := k.results.waitFinals(t, 1, 10*time.Second)
	k.publish("sendid.jobs.b", job("cb", "sb", "order-1", "test.b"))
	deadline := time.Now().Add(10 * time.Second)
	var rb received
	for time.Now().Before(deadline) {
		for _, r := range k.results.snapshot() {
			if r.Subject == "test.b" && r.Final() {
				rb = r
			}
		}
		if rb.ID != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ra := fa["order-1"]
	if ra.AppGroup != "a" || ra.Status != "created" || ra.SendID != "sa" || ra.Duplicate {
		t.Errorf("group a: %+v", ra)
	}
	if rb.AppGroup != "b" || rb.Status != "created" || rb.SendID != "sb" || rb.Duplicate {
		t.Errorf("group b: %+v", rb)
	}
	keys := map[string]string{}
	for _, r := range k.sim.Requests() {
		keys[r.SendID] = r.Key
	}
	if keys["sa"] != "key-a" || keys["sb"] != "key-b" || len(keys) != 2 {
		t.Errorf("calls by send_id → key: %v", keys)
	}
	// Re-published in b (outside the stream's duplicate window: another
	// Nats-Msg-Id): answered from b's record, not a's.
	k.publish("sendid.jobs.b", job("cb", "sb", "order-1", "test.b2"), "Nats-Msg-Id", "again")
	deadline = time.Now().Add(10 * time.Second)
	var again received
	for time.Now().Before(deadline) && again.ID == "" {
		for _, r := range k.results.snapshot() {
			if r.Subject == "test.b2" {
				again = r
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if again.AppGroup != "b" || again.SendID != "sb" || !again.Duplicate {
		t.Errorf("re-published in b: %+v", again)
	}
	if n := len(k.sim.Requests()); n != 2 {
		t.Errorf("%d calls, want 2", n)
	}
}

// Issue 10 #4: a job id whose record names an owner message that no longer
// exists is taken over and answered, not put back forever; a pair
// reservation whose owner is gone is taken over as a call in doubt.
func TestStaleOwnerTakenOver(t *testing.T) {
	t.Parallel()
	for _, policy := range []worker.InDoubtPolicy{worker.InDoubtRetry, worker.InDoubtFail} {
		t.Run(policy.String(), func(t *testing.T) {
			t.Parallel()
			k := newKit(t, kitOptions{inDoubt: map[string]worker.InDoubtPolicy{"default": policy}})
			rs := k.records()
			ctx := context.Background()
			// An id whose owner is gone with no call open: not in doubt.
			if _, err := rs.PutJob(ctx, queue.JobRecord{ID: "stuck", AppGroup: "default", Owner: goneSeq, Attempts: 1}, 0); err != nil {
				t.Fatal(err)
			}
			// A pair reserved by a message that is gone: its call may have
			// reached Braze.
			if _, err := rs.PutPair(ctx, "default", "c", "held", queue.PairRecord{State: queue.PairCalling, JobID: "lost", Seq: goneSeq + 1}, 0); err != nil {
				t.Fatal(err)
			}
			// A job without send_id whose own call was left open.
			if _, err := rs.PutJob(ctx, queue.JobRecord{ID: "open", AppGroup: "default", Owner: goneSeq + 2, Attempts: 1, Calling: 1}, 0); err != nil {
				t.Fatal(err)
			}
			k.publish("sendid.jobs", job("c", "s-stuck", "stuck", "test.stuck"))
			k.publish("sendid.jobs", job("c", "held", "pair", "test.pair"))
			k.publish("sendid.jobs", job("c", "", "open", "test.open"))
			f := k.results.waitFinals(t, 3, 15*time.Second)
			if r := f["stuck"]; r.Status != "created" || r.Attempts != 2 || r.InDoubt {
				t.Errorf("stuck: %+v", r)
			}
			for _, id := range []string{"pair", "open"} {
				r := f[id]
				if !r.InDoubt {
					t.Errorf("%s: in_doubt missing: %+v", id, r)
				}
				switch policy {
				case worker.InDoubtRetry:
					if r.Status != "created" {
						t.Errorf("%s: %+v", id, r)
					}
				case worker.InDoubtFail:
					if r.Status != "failed" || r.Error == nil || r.Error.Code != queue.CodeOutcomeUnknown {
						t.Errorf("%s: %+v", id, r)
					}
				}
			}
			calls := map[string]int{}
			for _, r := range k.sim.Requests() {
				calls[r.SendID]++
			}
			want := map[worker.InDoubtPolicy]map[string]int{
				worker.InDoubtRetry: {"s-stuck": 1, "held": 1, "": 1},
				worker.InDoubtFail:  {"s-stuck": 1},
			}[policy]
			if len(calls) != len(want) {
				t.Errorf("calls by send_id %v, want %v", calls, want)
			}
			for s, n := range want {
				if calls[s] != n {
					t.Errorf("calls by send_id %v, want %v", calls, want)
				}
			}
			if policy == worker.InDoubtFail {
				// The pair stays reserved by a gone owner: a later job for
				// it is in doubt as well and makes no call either.
				k.publish("sendid.jobs", job("c", "held", "pair-2", "test.pair2"))
				r := k.results.waitFinals(t, 4, 15*time.Second)["pair-2"]
				if r.Status != "failed" || !r.InDoubt || r.Error == nil || r.Error.Code != queue.CodeOutcomeUnknown {
					t.Errorf("pair-2: %+v", r)
				}
				if n := len(k.sim.Requests()); n != 1 {
					t.Errorf("%d calls, want 1", n)
				}
			}
		})
	}
}

// Issue 11 "Retry budget" (README: Message contract): config faults neither use
// up max_attempts nor keep their ledger slot. Key wrong for 3 probes with
// max_attempts 2, then fixed, then one 503 → created with attempts 5.
func TestRetryBudgetCountsRetryableFailuresOnly(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{
		groups:      map[string]quota.Policy{"default": pol},
		keys:        map[string]string{"default": "wrong"},
		maxAttempts: 2,
		sim:         brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "right"}}, FailFirst: 1, FailFirstStatus: 503},
	})
	k.publish("sendid.jobs", job("c", "s", "j", "test.j"))
	wrong := []worker.Group{{Name: "default", Key: braze.Key("wrong"), Sender: k.client, Policy: pol}}
	for probe := 1; probe <= 3; probe++ {
		waitUntil(t, "probe", 15*time.Second, func() bool { return len(k.sim.Requests()) >= probe })
		if probe < 3 {
			// A reload ends the config-fault pause: the next probe at once.
			if err := k.w.Reload(wrong); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every 401 gave its slot back.
	waitUntil(t, "401 slots released", 10*time.Second, func() bool { return k.used() == 0 })
	if got := k.results.finals(); len(got) != 0 {
		t.Fatalf("answered while the key is wrong: %+v", got)
	}
	if err := k.w.Reload([]worker.Group{{Name: "default", Key: braze.Key("right"), Sender: k.client, Policy: pol}}); err != nil {
		t.Fatal(err)
	}
	r := k.results.waitFinals(t, 1, 15*time.Second)["j"]
	if r.Status != "created" || r.Attempts != 5 {
		t.Fatalf("%+v", r)
	}
	// The three 401s are charged to nobody; the 503 stays counted as
	// uncertain until Braze's headers with the 201 settle it: used 1.
	waitUntil(t, "the ledger to count the 201 only", 10*time.Second, func() bool { return k.used() == 1 })
}

// A pair reserved by a message that still exists is waited for, not
// called; once that message is gone (here: deleted, as an ack or a purge
// would) the job takes the reservation over.
func TestLiveOwnerIsWaitedFor(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	ctx := context.Background()
	// A message that stays in the stream: a dead letter nobody consumes.
	ack, err := k.js.Publish(ctx, "sendid.dead.default", []byte(`{"campaign_id":"c","send_id":"held","id":"owner"}`))
	if err != nil {
		t.Fatal(err)
	}
	rs := k.records()
	if _, err := rs.PutJob(ctx, queue.JobRecord{ID: "owner", AppGroup: "default", Owner: ack.Sequence, Attempts: 1}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.PutPair(ctx, "default", "c", "held", queue.PairRecord{State: queue.PairCalling, JobID: "owner", Seq: ack.Sequence}, 0); err != nil {
		t.Fatal(err)
	}
	k.publish("sendid.jobs", job("c", "held", "waiter", "test.w"))
	// The lane meets the reservation and puts the job back (every 2 s)
	// while the owner's message exists.
	waitUntil(t, "the waiter to be put back and fetched again", 15*time.Second, func() bool {
		info, err := k.js.Consumer(ctx, queue.Stream, queue.LaneConsumer("default"))
		if err != nil {
			return false
		}
		ci, err := info.Info(ctx)
		return err == nil && ci.Delivered.Consumer >= 2
	})
	if n := len(k.sim.Requests()); n != 0 || len(k.results.finals()) != 0 {
		t.Fatalf("called or answered while the owner's message exists: %d calls, %v", n, k.results.finals())
	}
	st, err := k.js.Stream(ctx, queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, ack.Sequence); err != nil {
		t.Fatal(err)
	}
	r := k.results.waitFinals(t, 1, 15*time.Second)["waiter"]
	// The owner's record names the reserving message and shows every call
	// answered: taking over is not a call in doubt.
	if r.Status != "created" || r.InDoubt || r.Duplicate {
		t.Fatalf("%+v", r)
	}
	if n := len(k.sim.Requests()); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
}

// The pair is read again before every retry: a pair created meanwhile (by
// another job, another replica) is answered, not called again.
func TestPairRecheckedBeforeRetry(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{backoff: 3 * time.Second, sim: brazetest.Options{FailFirst: 1, FailFirstStatus: 503}})
	k.publish("sendid.jobs", job("c", "s", "j", "test.j"))
	waitUntil(t, "the first call", 10*time.Second, func() bool { return len(k.sim.Requests()) == 1 })
	// During the backoff (at least 1.5 s) another job creates the pair.
	if err := k.records().PairCreated(context.Background(), "default", "c", "s", queue.PairRecord{JobID: "other", SendID: "s"}); err != nil {
		t.Fatal(err)
	}
	r := k.results.waitFinals(t, 1, 15*time.Second)["j"]
	if r.Status != "created" || !r.Duplicate || r.SendID != "s" || r.Attempts != 1 {
		t.Fatalf("%+v", r)
	}
	if n := len(k.sim.Requests()); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
}
