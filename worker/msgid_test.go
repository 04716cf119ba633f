package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// Regression test (found in review; fixed): ARCHITECTURE §4 says a job that runs out of attempts "is kept on
// sendid.dead.<group> for replay". Dead letters are published with
// Nats-Msg-Id "<id>.dead" — not scoped by app group — into the SENDID stream,
// whose duplicate window (2m) then silently drops the dead letter of another
// group's job with the same id (Publisher.Dead ignores PubAck.Duplicate).
// Group b's job is answered retries_exhausted but never kept for replay.
func TestDeadLettersOfTwoGroupsWithOneIDAreKept(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{maxAttempts: 1, groups: map[string]quota.Policy{"a": pol, "b": pol},
		sim: brazetest.Options{FailFirst: 100, FailFirstStatus: 502}})
	k.publish("sendid.jobs.a", job("c", "s1", "same", "test.a"))
	k.results.waitFinals(t, 1, 10*time.Second)
	k.publish("sendid.jobs.b", job("c", "s2", "same", "test.b"))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		for _, r := range k.results.snapshot() {
			if r.Subject == "test.b" && r.Status == "failed" {
				n++
			}
		}
		if n > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	dls, err := queue.ListDead(context.Background(), k.js, k.subj)
	if err != nil {
		t.Fatal(err)
	}
	groups := map[string]int{}
	for _, d := range dls {
		groups[d.Group]++
	}
	if groups["a"] != 1 || groups["b"] != 1 {
		t.Fatalf("dead letters per group = %v, want a:1 b:1 (both jobs ended retries_exhausted)", groups)
	}
}

// Regression test (found in review; fixed): same cause, one group: `sendidctl dead replay` removes the dead
// letter and re-submits the job; if it runs out of attempts again within the
// stream's duplicate window, its new dead letter ("<id>.dead" again) is
// dropped as a duplicate — the job is gone from sendid.dead.<group>.
func TestReplayedJobThatDiesAgainIsKept(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{maxAttempts: 1, sim: brazetest.Options{FailFirst: 100, FailFirstStatus: 502}})
	k.publish("sendid.jobs", job("c", "s", "j", "test.j"))
	k.results.waitFinals(t, 1, 10*time.Second)
	ctx := context.Background()
	var dls []queue.DeadLetter
	for deadline := time.Now().Add(5 * time.Second); len(dls) == 0 && time.Now().Before(deadline); {
		dls, _ = queue.ListDead(ctx, k.js, k.subj)
		time.Sleep(50 * time.Millisecond)
	}
	if len(dls) != 1 {
		t.Fatalf("first dead letter: %d", len(dls))
	}
	before := len(k.sim.Requests())
	if err := queue.Replay(ctx, k.js, k.subj, queue.NewRecords(mustKV(t, k, queue.JobsBucket), mustKV(t, k, queue.PairsBucket)), dls[0]); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); len(k.sim.Requests()) == before && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	dls, err := queue.ListDead(ctx, k.js, k.subj)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 {
		t.Fatalf("after the replayed job failed again: %d dead letters, want 1 (the job must stay replayable)", len(dls))
	}
}

// Regression test (found in review; fixed): ARCHITECTURE §3: "Each result carries header Nats-Msg-Id:
// <id>.<status> so a results stream de-duplicates re-publications ... results
// published while no upstream listens are not lost." The msg id is not scoped
// by app group, and SENDID_RESULTS (one stream for sendid.results.>) drops
// group b's result because group a's job of the same id finished first.
func TestResultsStreamKeepsEachGroupsResult(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{groups: map[string]quota.Policy{"a": pol, "b": pol}})
	k.publish("sendid.jobs.a", job("c", "s1", "job-1", ""))
	k.results.waitFinals(t, 1, 10*time.Second)
	k.publish("sendid.jobs.b", job("c", "s2", "job-1", ""))
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		n := 0
		for _, r := range k.results.snapshot() {
			if r.Subject == "sendid.results.b" {
				n++
			}
		}
		if n > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := context.Background()
	st, err := k.js.Stream(ctx, queue.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetLastMsgForSubject(ctx, "sendid.results.b"); err != nil {
		t.Fatalf("group b's result is not in %s: %v", queue.ResultsStream, err)
	}
}

func mustKV(t *testing.T, k *kit, bucket string) jetstreamKV {
	t.Helper()
	kv, err := k.js.KeyValue(context.Background(), bucket)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

type jetstreamKV = jetstream.KeyValue
