package main

import (
	"fmt"
	"io"
	"net/http"
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
	t.Parallel()
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
		return strings.Count(text, "\nsendid_quota_remaining{") == n
	})
	t.Logf("all series after %s", time.Since(start))
	for i := range n {
		for _, series := range []string{"sendid_quota_cap", "sendid_quota_used", "sendid_quota_remaining", "sendid_quota_period_end_seconds", "sendid_backlog"} {
			if !strings.Contains(text, fmt.Sprintf("\n%s{app_group=\"g%03d\"} ", series, i)) {
				t.Fatalf("no %s for g%03d", series, i)
			}
		}
		if !strings.Contains(text, fmt.Sprintf("\nsendid_quota_remaining{app_group=\"g%03d\"} 100\n", i)) {
			t.Fatalf("g%03d: remaining is not the untouched cap of 100", i)
		}
	}
}
