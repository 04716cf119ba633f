package queue_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

// fetchOne pulls one message of the lane through the priority group; nil
// when none came within wait.
func fetchOne(t *testing.T, c jetstream.Consumer, wait time.Duration) jetstream.Msg {
	t.Helper()
	b, err := c.Fetch(1, jetstream.FetchMaxWait(wait), jetstream.FetchPriorityGroup(queue.LanePriorityGroup))
	if err != nil {
		t.Fatal(err)
	}
	var msg jetstream.Msg
	for m := range b.Messages() {
		msg = m
	}
	if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrPinIDMismatch) {
		t.Fatal(err)
	}
	return msg
}

// TestEnsureLaneUpdatesInPlace: a lane consumer created before priority
// groups (no policy, MaxAckPending 256, AckWait 30s) is updated in place,
// keeping its messages, to the pinned policy: one of two replicas receives
// the group's jobs, the other none while the owner keeps pulling, and
// takes over once the owner stops for longer than the failover time.
func TestEnsureLaneUpdatesInPlace(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.Connect()
	ctx := context.Background()
	subj := queue.Subjects{Prefix: "sendid"}
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, queue.Stream, jetstream.ConsumerConfig{
		Durable: queue.LaneConsumer("g"), FilterSubject: subj.Ready("g"), AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 256,
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if _, err := js.Publish(ctx, subj.Ready("g"), []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	const failover = time.Second
	var cs [2]jetstream.Consumer
	for i := range cs {
		_, jsi := s.Connect() // one connection per replica
		c, err := queue.EnsureLane(ctx, jsi, subj, "g", failover)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	info, err := cs[0].Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	if cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || len(cfg.PriorityGroups) != 1 || cfg.PriorityGroups[0] != queue.LanePriorityGroup ||
		cfg.PinnedTTL != failover || cfg.AckWait != failover || cfg.MaxAckPending != 1 || info.NumPending != 6 {
		t.Fatalf("after update: %+v, pending %d", cfg, info.NumPending)
	}
	owner, other := cs[0], cs[1]
	var got []byte
	take := func(c jetstream.Consumer) bool {
		m := fetchOne(t, c, 200*time.Millisecond)
		if m == nil {
			return false
		}
		got = append(got, m.Data()...)
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		return true
	}
	if !take(owner) {
		t.Fatal("first pull got nothing")
	}
	// The owner keeps pulling: the other replica gets nothing.
	for range 3 {
		if take(other) {
			t.Fatalf("a replica that is not pinned received %q", got)
		}
		if !take(owner) {
			t.Fatal("the owner got nothing")
		}
	}
	// The owner stops pulling: the other takes over, in FIFO order.
	deadline := time.Now().Add(10 * failover)
	for !take(other) {
		if time.Now().After(deadline) {
			t.Fatal("no takeover")
		}
	}
	if string(got) != "01234" {
		t.Fatalf("order %q", got)
	}
	// The old owner's next pull is refused (pin ID mismatch) and gets
	// nothing while the new owner holds the group.
	if take(owner) {
		t.Fatal("the old owner still receives")
	}
	if !take(other) || string(got) != "012345" {
		t.Fatalf("order %q", got)
	}
}

// TestLaneOneInFlight: with the job in flight unacknowledged, no replica
// receives the next one (MaxAckPending 1), even after the pin moves.
func TestLaneOneInFlight(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.Connect()
	ctx := context.Background()
	subj := queue.Subjects{Prefix: "sendid"}
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	const failover = time.Second
	var cs [2]jetstream.Consumer
	for i := range cs {
		_, jsi := s.Connect()
		c, err := queue.EnsureLane(ctx, jsi, subj, "g", failover)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	for _, b := range []string{"a", "b"} {
		if _, err := js.Publish(ctx, subj.Ready("g"), []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	first := fetchOne(t, cs[0], time.Second)
	if first == nil || string(first.Data()) != "a" {
		t.Fatalf("first %v", first)
	}
	// The owner holds "a" (kept alive) and stops pulling; the other replica
	// gets the pin but not "b" while "a" is in flight.
	for range 3 {
		if err := first.InProgress(); err != nil {
			t.Fatal(err)
		}
		if m := fetchOne(t, cs[1], failover/2); m != nil {
			t.Fatalf("received %q while the group's job was in flight", m.Data())
		}
	}
	if err := first.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if m := fetchOne(t, cs[1], 2*failover); m == nil || string(m.Data()) != "b" {
		t.Fatalf("after the ack: %v", m)
	}
}

// TestEnsureAdmissionUpdatesInPlace: admission's consumer of an older
// version is updated in place to the pinned policy, keeping its jobs.
func TestEnsureAdmissionUpdatesInPlace(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.Connect()
	ctx := context.Background()
	subj := queue.Subjects{Prefix: "sendid"}
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, queue.Stream, jetstream.ConsumerConfig{
		Durable: queue.AdmissionName, FilterSubjects: []string{"sendid.jobs", "sendid.jobs.*"}, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 1024,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "sendid.jobs", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	c, err := queue.EnsureAdmission(ctx, js, subj, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	if cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || len(cfg.PriorityGroups) != 1 || cfg.PinnedTTL != 2*time.Second ||
		cfg.AckWait != 2*time.Second || info.NumPending != 1 {
		t.Fatalf("after update: %+v, pending %d", cfg, info.NumPending)
	}
	if m := fetchOne(t, c, time.Second); m == nil {
		t.Fatal("no job through the priority group")
	}
}
