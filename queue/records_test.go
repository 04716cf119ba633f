package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

func setupRecords(t *testing.T) (*queue.Records, *natstest.Server) {
	t.Helper()
	s := natstest.Start(t)
	_, js := s.Connect()
	ctx := context.Background()
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: queue.Subjects{Prefix: "sendid"}, Replicas: 1, DuplicateWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	b, err := queue.EnsureBuckets(ctx, js, queue.BucketSettings{Replicas: 1, LedgerTTL: time.Hour, JobRecordTTL: time.Hour, PairTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return queue.NewRecords(b.Jobs, b.Pairs), s
}

// Job records are per app group: the same id in two groups is two records.
func TestJobRecordsKeyedByGroup(t *testing.T) {
	t.Parallel()
	rs, _ := setupRecords(t)
	ctx := context.Background()
	a := queue.JobRecord{ID: "order-1", AppGroup: "a", Owner: 7, Final: &queue.Result{ID: "order-1", AppGroup: "a", Status: "created", SendID: "sa"}}
	if _, err := rs.PutJob(ctx, a, 0); err != nil {
		t.Fatal(err)
	}
	if _, rev, err := rs.Job(ctx, "b", "order-1"); err != nil || rev != 0 {
		t.Fatalf("group b sees a record: rev %d, %v", rev, err)
	}
	got, rev, err := rs.Job(ctx, "a", "order-1")
	if err != nil || rev == 0 || got.Final == nil || got.Final.SendID != "sa" {
		t.Fatalf("group a: %+v rev %d %v", got, rev, err)
	}
	if _, err := rs.PutJob(ctx, a, 0); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("second create: %v", err)
	}
	if err := rs.DeleteJob(ctx, "a", "order-1"); err != nil {
		t.Fatal(err)
	}
	if _, rev, _ := rs.Job(ctx, "a", "order-1"); rev != 0 {
		t.Fatal("record still there after DeleteJob")
	}
	if _, err := rs.PutJob(ctx, queue.JobRecord{ID: "x"}, 0); err == nil {
		t.Fatal("a record without a group was written")
	}
}

// The pair record moves absent → calling → created with compare-and-swap:
// two reservations of one pair cannot both win, a stale revision cannot
// drop a reservation, and a created pair stays created.
func TestPairStateMachine(t *testing.T) {
	t.Parallel()
	rs, _ := setupRecords(t)
	ctx := context.Background()
	res := func(job string, seq uint64) queue.PairRecord {
		return queue.PairRecord{State: queue.PairCalling, JobID: job, Seq: seq, At: time.Now()}
	}
	rev, err := rs.PutPair(ctx, "g", "c", "s", res("j1", 10), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.PutPair(ctx, "g", "c", "s", res("j2", 11), 0); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("second reservation: %v", err)
	}
	// A takeover must name the revision it saw.
	rev2, err := rs.PutPair(ctx, "g", "c", "s", res("j2", 11), rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.PutPair(ctx, "g", "c", "s", res("j3", 12), rev); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("takeover with a stale revision: %v", err)
	}
	if err := rs.DropPair(ctx, "g", "c", "s", rev); !errors.Is(err, queue.ErrConflict) {
		t.Fatalf("drop with a stale revision: %v", err)
	}
	p, r, err := rs.Pair(ctx, "g", "c", "s")
	if err != nil || r != rev2 || p.State != queue.PairCalling || p.JobID != "j2" || p.Seq != 11 || p.Created() {
		t.Fatalf("%+v rev %d %v", p, r, err)
	}
	if err := rs.DropPair(ctx, "g", "c", "s", rev2); err != nil {
		t.Fatal(err)
	}
	if _, r, _ := rs.Pair(ctx, "g", "c", "s"); r != 0 {
		t.Fatal("dropped reservation still there")
	}
	// Absent again: a new reservation, then created.
	if _, err := rs.PutPair(ctx, "g", "c", "s", res("j4", 13), 0); err != nil {
		t.Fatal(err)
	}
	if err := rs.PairCreated(ctx, "g", "c", "s", queue.PairRecord{JobID: "j4", SendID: "s", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	p, _, err = rs.Pair(ctx, "g", "c", "s")
	if err != nil || !p.Created() || p.SendID != "s" || p.JobID != "j4" {
		t.Fatalf("%+v %v", p, err)
	}
	// Another group's pair with the same ids is another record.
	if _, r, _ := rs.Pair(ctx, "h", "c", "s"); r != 0 {
		t.Fatal("group h sees group g's pair")
	}
}

// Pair records written before pairs had states only recorded creations.
func TestPairRecordWithoutStateReadsCreated(t *testing.T) {
	t.Parallel()
	rs, _ := setupRecords(t)
	ctx := context.Background()
	if _, err := rs.PutPair(ctx, "g", "c", "old", queue.PairRecord{JobID: "j", SendID: "old"}, 0); err != nil {
		t.Fatal(err)
	}
	p, _, err := rs.Pair(ctx, "g", "c", "old")
	if err != nil || !p.Created() {
		t.Fatalf("%+v %v", p, err)
	}
}

// MessageExists tells a live owner from one that is acked or purged.
func TestMessageExists(t *testing.T) {
	t.Parallel()
	_, s := setupRecords(t)
	_, js := s.Connect()
	ctx := context.Background()
	ack, err := js.Publish(ctx, "sendid.ready.g", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := queue.MessageExists(ctx, js, ack.Sequence); err != nil || !ok {
		t.Fatalf("stored message: %v %v", ok, err)
	}
	for _, seq := range []uint64{ack.Sequence + 1000, 0} {
		if ok, err := queue.MessageExists(ctx, js, seq); err != nil || ok {
			t.Fatalf("seq %d: %v %v", seq, ok, err)
		}
	}
	st, err := js.Stream(ctx, queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := queue.MessageExists(ctx, js, ack.Sequence); err != nil || ok {
		t.Fatalf("purged message: %v %v", ok, err)
	}
}
