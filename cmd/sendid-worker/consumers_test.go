package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

// The admission consumer and a lane consumer deleted while jobs flow: both
// come back, every job is answered, sendid_consumer_recreated_total moved
// for each, and /readyz said 503 with the reason in between. To see the
// 503 reliably, each deleted consumer's place is first taken by a consumer
// with an overlapping filter (a WorkQueue stream refuses the overlap), so
// the worker keeps trying until the test removes it.
func TestConsumersDeletedWhileJobsFlow(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{})
	t.Cleanup(sim.Close)
	d := startDaemon(t, map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_BRAZE_URL": sim.URL, "SENDID_BRAZE_API_KEY": "k",
		"SENDID_DAILY_CAP": "10000", "SENDID_BURST": "1000"})
	waitFor(t, "ready", 20*time.Second, func() bool { return d.status("/readyz") == 200 })
	nc, js := ns.Connect()
	res := subscribe(t, nc, "test.results")
	const n = 60
	var pub sync.WaitGroup
	pub.Go(func() {
		for i := range n {
			body := fmt.Sprintf(`{"campaign_id":"c","send_id":"cd-%d","id":"cd-%d","reply_to":"test.results"}`, i, i)
			if err := nc.Publish("sendid.jobs", []byte(body)); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	waitFor(t, "jobs flowing", 10*time.Second, func() bool { return res.finals() >= 5 })

	ctx := context.Background()
	block := func(name, blocker, filter string) {
		for attempt := range 100 {
			if err := js.DeleteConsumer(ctx, queue.Stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				t.Fatal(err)
			}
			if _, err := js.CreateConsumer(ctx, queue.Stream, jetstream.ConsumerConfig{Durable: blocker, FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy}); err == nil {
				return
			}
			time.Sleep(time.Duration(attempt) * time.Millisecond)
		}
		t.Fatalf("could not take %s's place", name)
	}
	block(queue.AdmissionName, "block_admission", "sendid.jobs")
	block(queue.LaneConsumer("default"), "block_lane", "sendid.ready.default")
	waitFor(t, "/readyz 503 naming both consumers", 15*time.Second, func() bool {
		code, body := d.body("/readyz")
		return code == 503 && strings.Contains(body, "consumer admission being restored") && strings.Contains(body, "consumer lane_default being restored")
	})
	for _, b := range []string{"block_admission", "block_lane"} {
		if err := js.DeleteConsumer(ctx, queue.Stream, b); err != nil {
			t.Fatal(err)
		}
	}
	back := time.Now()
	waitFor(t, "/readyz 200 again", 30*time.Second, func() bool { return d.status("/readyz") == 200 })
	t.Logf("consumers back %s after their places were freed", time.Since(back).Round(time.Millisecond))
	pub.Wait()
	waitFor(t, "every job answered", 30*time.Second, func() bool { return res.finals() == n })
	res.mu.Lock()
	for id, rs := range res.by {
		if rs[len(rs)-1].Status != "created" {
			t.Errorf("%s: %+v", id, rs)
		}
	}
	res.mu.Unlock()
	for _, c := range []string{queue.AdmissionName, queue.LaneConsumer("default")} {
		if v := metric(t, d, fmt.Sprintf(`sendid_consumer_recreated_total{consumer=%q}`, c)); v < 1 {
			t.Errorf("sendid_consumer_recreated_total{consumer=%q} = %v", c, v)
		}
	}

	// Idle now: a plain deletion is noticed from the server's advisory.
	for _, c := range []string{queue.AdmissionName, queue.LaneConsumer("default")} {
		if err := js.DeleteConsumer(ctx, queue.Stream, c); err != nil {
			t.Fatal(err)
		}
	}
	gone := time.Now()
	for _, c := range []string{queue.AdmissionName, queue.LaneConsumer("default")} {
		waitFor(t, c+" recreated while idle", 30*time.Second, func() bool {
			_, err := js.Consumer(ctx, queue.Stream, c)
			return err == nil && metric(t, d, fmt.Sprintf(`sendid_consumer_recreated_total{consumer=%q}`, c)) >= 2
		})
	}
	t.Logf("idle consumers back %s after their deletion", time.Since(gone).Round(time.Millisecond))
	waitFor(t, "/readyz 200 at the end", 30*time.Second, func() bool { return d.status("/readyz") == 200 })
}
