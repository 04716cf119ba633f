package queue_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

// A batch read finds what Records.Job and Records.Pair find, key by key:
// records, revisions, deleted and missing keys, pairs in either state,
// groups kept apart, and more keys than one direct-get request may match.
func TestBatchReaderMatchesRecords(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := s.Connect()
	ctx := context.Background()
	b, err := queue.EnsureBuckets(ctx, js, queue.BucketSettings{Replicas: 1, LedgerTTL: time.Hour, JobRecordTTL: time.Hour, PairTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	recs := queue.NewRecords(b.Jobs, b.Pairs)
	final := queue.Result{ID: "done", AppGroup: "g1", Status: queue.StatusCreated, SendID: "s-done", Attempts: 1}
	if _, err := recs.PutJob(ctx, queue.JobRecord{ID: "done", AppGroup: "g1", Attempts: 1, Final: &final}, 0); err != nil {
		t.Fatal(err)
	}
	rev, err := recs.PutJob(ctx, queue.JobRecord{ID: "open", AppGroup: "g1", Owner: 7, Attempts: 1, Calling: 1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := recs.PutJob(ctx, queue.JobRecord{ID: "open", AppGroup: "g1", Owner: 7, Attempts: 2, Calling: 2}, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := recs.PutJob(ctx, queue.JobRecord{ID: "gone", AppGroup: "g1"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := recs.DeleteJob(ctx, "g1", "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := recs.PutPair(ctx, "g1", "c", "s-done", queue.PairRecord{State: queue.PairCreated, JobID: "done", SendID: "s-done", At: time.Unix(1, 0).UTC()}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := recs.PutPair(ctx, "g1", "c", "s-open", queue.PairRecord{State: queue.PairCalling, JobID: "open", Seq: 7, Attempt: 2, At: time.Unix(2, 0).UTC()}, 0); err != nil {
		t.Fatal(err)
	}
	// A record written before pairs had states reads as created.
	if _, err := recs.PutPair(ctx, "g1", "c", "s-old", queue.PairRecord{JobID: "old", SendID: "s-old", At: time.Unix(3, 0).UTC()}, 0); err != nil {
		t.Fatal(err)
	}
	keys := []queue.RecordKey{
		{Group: "g1", ID: "done", CampaignID: "c", SendID: "s-done"},
		{Group: "g1", ID: "open", CampaignID: "c", SendID: "s-open"},
		{Group: "g1", ID: "gone"},
		{Group: "g1", ID: "new", CampaignID: "c", SendID: "s-new"},
		{Group: "g2", ID: "done", CampaignID: "c", SendID: "s-done"}, // another group: nothing
		{Group: "g1", ID: "legacy", CampaignID: "c", SendID: "s-old"},
		{Group: "g1", ID: "done"}, // twice in one batch
	}
	for i := range 1100 { // more than one request's worth
		keys = append(keys, queue.RecordKey{Group: "g3", ID: fmt.Sprint("many-", i), CampaignID: "c", SendID: fmt.Sprint("s-", i)})
	}
	for i := 0; i < 1100; i += 100 {
		if _, err := recs.PutJob(ctx, queue.JobRecord{ID: fmt.Sprint("many-", i), AppGroup: "g3", Attempts: i}, 0); err != nil {
			t.Fatal(err)
		}
	}
	got, err := queue.NewBatchReader(nc, recs).Read(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(keys) {
		t.Fatalf("%d results for %d keys", len(got), len(keys))
	}
	found := 0
	for i, k := range keys {
		job, jobRev, err := recs.Job(ctx, k.Group, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := queue.RecordsOf{Job: job, JobRev: jobRev}
		if k.SendID != "" {
			if want.Pair, want.PairRev, err = recs.Pair(ctx, k.Group, k.CampaignID, k.SendID); err != nil {
				t.Fatal(err)
			}
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("%+v: batch read %+v, Records read %+v", k, got[i], want)
		}
		if got[i].JobRev != 0 {
			found++
		}
	}
	if found != 2+1+11 || got[1].Job.Attempts != 2 || got[5].Pair.State != queue.PairCreated || got[2].JobRev != 0 {
		t.Errorf("found %d job records; open %+v; legacy pair %+v; deleted %+v", found, got[1], got[5], got[2])
	}
}

// Without the buckets' streams, a batch read fails (and reports it)
// instead of finding nothing.
func TestBatchReaderReportsMissingStream(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := s.Connect()
	ctx := context.Background()
	b, err := queue.EnsureBuckets(ctx, js, queue.BucketSettings{Replicas: 1, LedgerTTL: time.Hour, JobRecordTTL: time.Hour, PairTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r := queue.NewBatchReader(nc, queue.NewRecords(b.Jobs, b.Pairs))
	if err := js.DeleteKeyValue(ctx, queue.JobsBucket); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := r.Read(ctx, []queue.RecordKey{{Group: "g", ID: "x"}}); err == nil {
		t.Fatal("batch read of a deleted bucket: no error")
	}
}
