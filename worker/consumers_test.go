package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// blockConsumer deletes consumer name and, before the worker can bring it
// back, takes its place with a consumer whose filter overlaps (a WorkQueue
// stream refuses the overlap), so that the worker is seen restoring it.
// The returned function removes the blocker.
func blockConsumer(t *testing.T, k *kit, name string, filter string) func() {
	t.Helper()
	ctx := context.Background()
	for attempt := 0; attempt < 50; attempt++ {
		if err := k.js.DeleteConsumer(ctx, queue.Stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatal(err)
		}
		_, err := k.js.CreateConsumer(ctx, queue.Stream, jetstream.ConsumerConfig{Durable: "blocker", FilterSubject: filter, AckPolicy: jetstream.AckExplicitPolicy})
		if err == nil {
			return func() {
				if err := k.js.DeleteConsumer(ctx, queue.Stream, "blocker"); err != nil {
					t.Errorf("remove blocker: %v", err)
				}
			}
		}
		time.Sleep(time.Duration(attempt) * time.Millisecond) // the worker was faster: again
	}
	t.Fatalf("could not take %s's place", name)
	return nil
}

// readiness records every reason Ready gave while it runs.
func watchReady(t *testing.T, w *worker.Worker) (reasons func() []string) {
	var (
		mu   sync.Mutex
		seen []string
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		for {
			if err := w.Ready(); err != nil {
				mu.Lock()
				if len(seen) == 0 || seen[len(seen)-1] != err.Error() {
					seen = append(seen, err.Error())
				}
				mu.Unlock()
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	t.Cleanup(func() { close(done); wg.Wait() })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

func waitUntil(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Admission's consumer deleted while jobs flow: the worker reports not
// ready with the reason, recreates it, counts it, and answers every job.
func TestAdmissionConsumerRecreated(t *testing.T) {
	t.Parallel()
	m := worker.NewMetrics(prometheus.NewRegistry())
	k := newKit(t, kitOptions{metrics: m, groups: map[string]quota.Policy{"default": {Cap: 1000, Burst: 100, Period: 24 * time.Hour}}})
	reasons := watchReady(t, k.w)
	const n = 30
	var pub sync.WaitGroup
	pub.Go(func() {
		for i := range n {
			k.publish("sendid.jobs", job("c", fmt.Sprintf("s%02d", i), fmt.Sprintf("j%02d", i), "test.r"))
			time.Sleep(5 * time.Millisecond)
		}
	})
	k.results.waitFinals(t, 3, 10*time.Second)
	unblock := blockConsumer(t, k, queue.AdmissionName, "sendid.jobs")
	waitUntil(t, "Ready to name the admission consumer", 10*time.Second, func() bool {
		err := k.w.Ready()
		return err != nil && strings.Contains(err.Error(), "consumer admission being restored")
	})
	unblock()
	pub.Wait()
	finals := k.results.waitFinals(t, n, 20*time.Second)
	for id, r := range finals {
		if r.Status != queue.StatusCreated {
			t.Errorf("%s: %+v", id, r)
		}
	}
	waitUntil(t, "ready again", 10*time.Second, func() bool { return k.w.Ready() == nil })
	if got := counter(t, m.ConsumerRecreated.WithLabelValues(queue.AdmissionName)); got < 1 {
		t.Fatalf("sendid_consumer_recreated_total{consumer=admission} = %v", got)
	}
	if len(reasons()) == 0 {
		t.Fatal("never seen not ready")
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

// A lane's consumer deleted while its jobs flow: the same, for the lane.
func TestLaneConsumerRecreated(t *testing.T) {
	t.Parallel()
	m := worker.NewMetrics(prometheus.NewRegistry())
	k := newKit(t, kitOptions{metrics: m, groups: map[string]quota.Policy{
		"default": {Cap: 1000, Burst: 100, Period: 24 * time.Hour},
		"eu":      {Cap: 1000, Burst: 100, Period: 24 * time.Hour},
	}})
	const n = 30
	var pub sync.WaitGroup
	pub.Go(func() {
		for i := range n {
			k.publish("sendid.jobs.eu", job("c", fmt.Sprintf("s%02d", i), fmt.Sprintf("j%02d", i), "test.r"))
			time.Sleep(5 * time.Millisecond)
		}
	})
	k.results.waitFinals(t, 3, 10*time.Second)
	lane := queue.LaneConsumer("eu")
	unblock := blockConsumer(t, k, lane, "sendid.ready.eu")
	waitUntil(t, "Ready to name the lane consumer", 10*time.Second, func() bool {
		err := k.w.Ready()
		return err != nil && strings.Contains(err.Error(), "consumer "+lane+" being restored")
	})
	unblock()
	pub.Wait()
	finals := k.results.waitFinals(t, n, 20*time.Second)
	for id, r := range finals {
		if r.Status != queue.StatusCreated {
			t.Errorf("%s: %+v", id, r)
		}
	}
	waitUntil(t, "ready again", 10*time.Second, func() bool { return k.w.Ready() == nil })
	if got := counter(t, m.ConsumerRecreated.WithLabelValues(lane)); got < 1 {
		t.Fatalf("sendid_consumer_recreated_total{consumer=%s} = %v", lane, got)
	}
}

// A paused lane's consumer deleted: restored at once, not when the pause
// ends (the deletion advisory reaches the paused lane).
func TestPausedLaneConsumerRecreated(t *testing.T) {
	t.Parallel()
	m := worker.NewMetrics(prometheus.NewRegistry())
	k := newKit(t, kitOptions{metrics: m,
		keys: map[string]string{"default": "wrong"},
		sim:  brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "right"}}},
	})
	k.publish("sendid.jobs", job("c", "s1", "j1", "test.j1"))
	waitUntil(t, "the lane paused for the configuration fault", 10*time.Second, func() bool {
		for _, l := range k.w.Lanes() {
			if l.PauseReason == "config_fault" {
				return true
			}
		}
		return false
	})
	lane := queue.LaneConsumer("default")
	if err := k.js.DeleteConsumer(context.Background(), queue.Stream, lane); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the consumer recreated during the pause", 10*time.Second, func() bool {
		_, err := k.js.Consumer(context.Background(), queue.Stream, lane)
		return err == nil && counter(t, m.ConsumerRecreated.WithLabelValues(lane)) == 1
	})
	paused := false
	for _, l := range k.w.Lanes() {
		paused = paused || l.PauseReason == "config_fault"
	}
	if !paused {
		t.Fatal("the restore ended the configuration-fault pause")
	}
}
