package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

// TestClusterFailover runs the worker on a 3-node JetStream cluster with the
// stream and buckets replicated three times, kills the SENDID stream leader
// in the middle of a run, and checks that every job is answered, no call
// went over the cap, and the worker carried on through the survivors.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	t.Parallel()
	const jobs, capN = 120, 40
	cl := natstest.StartCluster(t, 3)
	sim := brazetest.NewServer(brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "k", Cap: capN, Period: 10 * time.Second}}})
	t.Cleanup(sim.Close)
	cfg := filepath.Join(t.TempDir(), "sendid.yaml")
	if err := os.WriteFile(cfg, []byte("streams: {replicas: 3}\nnats: {reconnect_wait: 100ms}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, map[string]string{"SENDID_CONFIG": cfg, "SENDID_NATS_URL": cl.URLs(), "SENDID_BRAZE_URL": sim.URL,
		"SENDID_BRAZE_API_KEY": "k", "SENDID_DAILY_CAP": fmt.Sprint(capN), "SENDID_BURST": "10", "SENDID_QUOTA_PERIOD": "10s"})
	waitFor(t, "ready", 60*time.Second, func() bool { return d.status("/readyz") == 200 })

	nc, err := nats.Connect(cl.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	res := subscribe(t, nc, "test.results")
	for i := range jobs {
		body := fmt.Sprintf(`{"campaign_id":"c","send_id":"f-%d","id":"f-%d","reply_to":"test.results"}`, i, i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := js.Publish(ctx, "sendid.jobs", []byte(body)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		cancel()
	}
	waitFor(t, "some progress", 30*time.Second, func() bool { return res.finals() >= 15 })
	st, err := js.Stream(context.Background(), queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream is not replicated: %v %+v", err, info)
	}
	leader := info.Cluster.Leader
	if !cl.Kill(leader) {
		t.Fatalf("no node %s", leader)
	}
	t.Logf("killed stream leader %s after %d results", leader, res.finals())
	waitFor(t, "every job answered after the failover", 120*time.Second, func() bool { return res.finals() == jobs })

	stats := sim.Stats()
	for period, n := range stats.CallsPerPeriod {
		if n > capN {
			t.Errorf("%d created in %s, cap %d", n, period, capN)
		}
	}
	if stats.OverCap != 0 {
		t.Errorf("%d calls over the cap", stats.OverCap)
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	for i := range jobs {
		rs := res.by[fmt.Sprintf("f-%d", i)]
		if len(rs) == 0 || rs[len(rs)-1].Status != "created" {
			t.Errorf("f-%d: %+v", i, rs)
		}
	}
	t.Logf("jobs %d, Braze calls %d, created %d, over cap %d, pairs twice %d", jobs, stats.Calls, stats.Created, stats.OverCap, stats.PairsTwice)
	waitFor(t, "ready on the survivors", 30*time.Second, func() bool { return d.status("/readyz") == 200 })
}
