package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/sendid/sendid/queue"
)

// A first delivery skips the record reads; when its id turns out taken as
// its call is about to open, the pair reservation it took is dropped and
// the job is claimed again with the records read: it is answered from the
// id's stored result, without a call, and leaves no reservation behind.
func TestFirstDeliveryWithTakenIDReadsAgain(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	ctx := context.Background()
	rs := k.records()
	storeCreatedDup(t, k)
	// Straight onto the lane's FIFO, as if admitted before the record was
	// written.
	k.publish(k.subj.Ready("default"), job("c", "fresh", "dup", "test.dup"))
	r := k.results.waitFinals(t, 1, 15*time.Second)["dup"]
	if r.Status != queue.StatusCreated || r.SendID != "s-old" || !r.Duplicate {
		t.Fatalf("%+v", r)
	}
	if n := len(k.sim.Requests()); n != 0 {
		t.Fatalf("%d Braze calls, want 0", n)
	}
	if _, rev, err := rs.Pair(ctx, "default", "c", "fresh"); err != nil || rev != 0 {
		t.Fatalf("pair reservation left behind: rev %d, %v", rev, err)
	}
}

// storeCreatedDup stores id "dup" of group default as created with send_id
// "s-old" by a message that is gone (no such sequence).
func storeCreatedDup(t *testing.T, k *kit) {
	t.Helper()
	stored := queue.Result{ID: "dup", AppGroup: "default", CampaignID: "c", SendID: "s-old", Status: queue.StatusCreated, Attempts: 1}
	if _, err := k.records().PutJob(context.Background(), queue.JobRecord{ID: "dup", AppGroup: "default", Owner: 1 << 40, Attempts: 1, Final: &stored}, 0); err != nil {
		t.Fatal(err)
	}
}
