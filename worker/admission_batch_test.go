package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// One admission batch mixing two groups, bad input, an unknown group, a
// duplicate id and a duplicate pair answered from stored records, jobs over
// the period's cap and one whose forecast passes its not_after: every job
// gets exactly its answer (or one deferred notice, on its group's results
// subject, stored by the results stream), the deferred ones in their
// group's order, and only the jobs that fit the caps reach Braze, in order.
func TestAdmissionBatchMixed(t *testing.T) {
	t.Parallel()
	testAdmissionBatchMixed(t, nil)
}

// renamedKV is a bucket that names another: a batch read of it finds no
// stream (and fails), while its own reads and writes reach the bucket.
type renamedKV struct{ jetstream.KeyValue }

func (renamedKV) Bucket() string { return "SENDID_NO_SUCH_BUCKET" }

// When a batch read fails (here: no such stream), admission reads the
// records job by job and answers the same.
func TestAdmissionBatchMixedJobByJob(t *testing.T) {
	t.Parallel()
	testAdmissionBatchMixed(t, func(kv jetstream.KeyValue) jetstream.KeyValue { return renamedKV{kv} })
}

func testAdmissionBatchMixed(t *testing.T, records func(jetstream.KeyValue) jetstream.KeyValue) {
	day := quota.Policy{Cap: 2, Burst: 2, Period: 24 * time.Hour}
	per := day.PeriodAt(time.Now())
	if time.Until(per.End) < time.Minute { // the forecasts below assume one period
		time.Sleep(time.Until(per.End) + time.Second)
		per = day.PeriodAt(time.Now())
	}
	notAfter := time.Now().Add(time.Until(per.End) / 2).UTC()
	k := newKit(t, kitOptions{
		records: records,
		groups:  map[string]quota.Policy{"ga": day, "gb": {Cap: 1, Burst: 1, Period: 24 * time.Hour}},
		before: func(k *kit) {
			ctx := context.Background()
			jobs, err := k.js.KeyValue(ctx, queue.JobsBucket)
			if err != nil {
				t.Fatal(err)
			}
			pairs, err := k.js.KeyValue(ctx, queue.PairsBucket)
			if err != nil {
				t.Fatal(err)
			}
			recs := queue.NewRecords(jobs, pairs)
			old := queue.Result{ID: "a-dup", AppGroup: "ga", CampaignID: "c", SendID: "s-old", Status: queue.StatusCreated, Attempts: 1}
			if _, err := recs.PutJob(ctx, queue.JobRecord{ID: "a-dup", AppGroup: "ga", Attempts: 1, Final: &old}, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := recs.PutPair(ctx, "ga", "c", "s-taken", queue.PairRecord{State: queue.PairCreated, JobID: "earlier", SendID: "s-taken", At: time.Now()}, 0); err != nil {
				t.Fatal(err)
			}
			b3 := job("c", "s-b3", "b3", "test.b3")
			b3["not_after"] = notAfter.Format(time.RFC3339)
			// Published before the worker starts: admission receives them together.
			k.publish("sendid.jobs.ga", job("c", "s-a1", "a1", "test.a1"))
			k.publish("sendid.jobs.ga", "not json", queue.HeaderMsgID, "bad", queue.HeaderReplyTo, "test.bad")
			k.publish("sendid.jobs.gb", job("c", "s-b1", "b1", "test.b1"))
			k.publish("sendid.jobs.ga", job("c", "s-new", "a-dup", "test.a-dup"))
			k.publish("sendid.jobs.gb", job("c", "s-b2", "b2", ""))
			k.publish("sendid.jobs.ga", job("c", "s-a2", "a2", "test.a2"))
			k.publish("sendid.jobs.gz", job("c", "s-z", "z", "test.z"))
			k.publish("sendid.jobs.ga", job("c", "s-a3", "a3", ""))
			k.publish("sendid.jobs.ga", job("c", "s-taken", "a-pair", "test.a-pair"))
			k.publish("sendid.jobs.ga", job("c", "s-a4", "a4", ""))
			k.publish("sendid.jobs.gb", b3)
		},
	})
	finals := k.results.waitFinals(t, 8, 20*time.Second)
	want := map[string]struct {
		status, code string
		duplicate    bool
		sendID       string
	}{
		"a1":     {status: queue.StatusCreated, sendID: "s-a1"},
		"a2":     {status: queue.StatusCreated, sendID: "s-a2"},
		"b1":     {status: queue.StatusCreated, sendID: "s-b1"},
		"bad":    {status: queue.StatusFailed, code: queue.CodeInvalidJob},
		"z":      {status: queue.StatusFailed, code: queue.CodeUnknownAppGroup},
		"a-dup":  {status: queue.StatusCreated, duplicate: true, sendID: "s-old"},
		"a-pair": {status: queue.StatusCreated, duplicate: true, sendID: "s-taken"},
		"b3":     {status: queue.StatusExpired, code: queue.CodeExpired},
	}
	for id, w := range want {
		r, ok := finals[id]
		switch {
		case !ok:
			t.Errorf("%s: no final result", id)
		case r.Status != w.status || r.Duplicate != w.duplicate || (w.sendID != "" && r.SendID != w.sendID):
			t.Errorf("%s: %+v, want %+v", id, r.Result, w)
		case w.code != "" && (r.Error == nil || r.Error.Code != w.code):
			t.Errorf("%s: error %+v, want code %s", id, r.Error, w.code)
		case r.Subject != "test."+id:
			t.Errorf("%s answered on %s", id, r.Subject)
		}
	}
	for id := range finals {
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected final result for %s: %+v", id, finals[id].Result)
		}
	}

	// The deferred notices: a3 and a4 behind a1 and a2 in ga, b2 behind b1.
	var notices []received
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		notices = notices[:0]
		for _, r := range k.results.snapshot() {
			if r.Status == queue.StatusDeferred {
				notices = append(notices, r)
			}
		}
		if len(notices) >= 3 {
			break
		}
	}
	byID := map[string]received{}
	for _, n := range notices {
		if _, twice := byID[n.ID]; twice {
			t.Errorf("two notices for %s", n.ID)
		}
		byID[n.ID] = n
	}
	for id, group := range map[string]string{"a3": "ga", "a4": "ga", "b2": "gb"} {
		n, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("%s: no deferred notice (notices %+v)", id, notices)
		case n.Subject != "sendid.results."+group || n.AppGroup != group:
			t.Errorf("%s: notice on %s for group %s", id, n.Subject, n.AppGroup)
		case n.DeferredUntil == nil || !n.DeferredUntil.Equal(per.End) || n.Position == nil || n.ETA == nil:
			t.Errorf("%s: notice %+v, want deferred until %s with a position and an ETA", id, n.Result, per.End)
		}
	}
	if len(byID) != 3 {
		t.Errorf("%d deferred notices, want 3: %+v", len(byID), notices)
	}
	if a3, a4 := byID["a3"], byID["a4"]; a3.Position != nil && a4.Position != nil && *a3.Position >= *a4.Position {
		t.Errorf("positions: a3 %d, a4 %d", *a3.Position, *a4.Position)
	}
	// The results stream stored each notice (the worker waited for it
	// before acking the job).
	st, err := k.js.Stream(context.Background(), queue.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	for subject, id := range map[string]string{"sendid.results.ga": "a4", "sendid.results.gb": "b2"} {
		m, err := st.GetLastMsgForSubject(context.Background(), subject)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if got := m.Header.Get(queue.HeaderMsgID); got != byID[id].AppGroup+"."+id+".deferred" {
			t.Errorf("last stored on %s: %q, want %s's notice", subject, got, id)
		}
	}

	// Braze saw exactly the jobs within the caps, each group in order.
	var calls []string
	for _, r := range k.sim.Requests() {
		calls = append(calls, r.SendID)
	}
	pos := map[string]int{}
	for i, c := range calls {
		pos[c] = i + 1
	}
	if len(calls) != 3 || pos["s-a1"] == 0 || pos["s-a2"] == 0 || pos["s-b1"] == 0 || pos["s-a1"] > pos["s-a2"] {
		t.Errorf("Braze calls %v, want s-a1 before s-a2, and s-b1", calls)
	}
}
