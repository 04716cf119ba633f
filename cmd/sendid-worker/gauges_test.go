package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
)

// scrape returns the /metrics text.
func scrape(t *testing.T, d *daemon) string {
	t.Helper()
	resp, err := http.Get(d.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// With 1,000 app groups every group's quota series is on /metrics: the
// gauges come from memory, so no group's series is dropped by a scrape
// timeout (sendid-bench measures how long the scrape takes).
func TestMetricsAtThousandGroups(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 lanes")
	}
	// Not parallel: 1,000 lanes starting would starve the timing-sensitive
	// tests (cluster failover) that run beside it on a small machine.
	const n = 1000
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{})
	t.Cleanup(sim.Close)
	d := startDaemon(t, map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_BRAZE_URL": sim.URL, "TEST_KEY": "k",
		"SENDID_CONFIG": groupsConfig(t, n)})
	start := time.Now()
	waitFor(t, "ready with 1,000 groups", 120*time.Second, func() bool { return d.status("/readyz") == 200 })
	t.Logf("ready after %s", time.Since(start))
	var text string
	waitFor(t, "every group's quota series", 60*time.Second, func() bool {
		text = scrape(t, d)
		// The quota comes from the ledger, the backlog from the lane
		// consumer: both are read by the background refresh.
		return strings.Count(text, "\nsendid_quota_remaining{") == n && strings.Count(text, "\nsendid_backlog{") == n
	})
	t.Logf("all series after %s", time.Since(start))
	for i := range n {
		for _, series := range []string{"sendid_quota_cap", "sendid_quota_used", "sendid_quota_remaining", "sendid_quota_period_end_timestamp_seconds", "sendid_backlog"} {
			if !strings.Contains(text, fmt.Sprintf("\n%s{app_group=\"g%03d\"} ", series, i)) {
				t.Fatalf("no %s for g%03d", series, i)
			}
		}
		// An idle lane's probe may hold a slot at the moment of the scrape.
		used, remaining := value(text, fmt.Sprintf("sendid_quota_used{app_group=\"g%03d\"}", i)), value(text, fmt.Sprintf("sendid_quota_remaining{app_group=\"g%03d\"}", i))
		if used+remaining != 100 || used > 1 {
			t.Fatalf("g%03d: used %v, remaining %v; want the cap of 100 untouched", i, used, remaining)
		}
	}

	// The operator page at 1,000 groups: 50 per page, a filter, and what a
	// page costs (logged, not asserted: a shared machine is noisy).
	var took []time.Duration
	for _, path := range []string{"/ui", "/ui?page=20", "/ui?q=g99", "/ui", "/ui"} {
		t0 := time.Now()
		resp, err := http.Get(d.http + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took = append(took, time.Since(t0))
		rows := strings.Count(string(body), "<tr data-group=")
		want := map[string]int{"/ui": 50, "/ui?page=20": 50, "/ui?q=g99": 10}[path]
		if resp.StatusCode != 200 || rows != want {
			t.Fatalf("GET %s: %d, %d rows, want %d", path, resp.StatusCode, rows, want)
		}
	}
	slices.Sort(took)
	t.Logf("/ui at 1,000 groups: median %s, max %s over %d requests", took[len(took)/2], took[len(took)-1], len(took))
}

// value reads the sample of series from a scrape (-1 when absent).
func value(text, series string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}
