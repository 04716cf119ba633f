package worker

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Calls cut by the call timeout land in a finite bucket.
func TestLatencyBucketsPastCallTimeout(t *testing.T) {
	if last := LatencyBuckets[len(LatencyBuckets)-1]; last <= (30 * time.Second).Seconds() {
		t.Errorf("largest latency bucket %gs is not past the 30s call timeout", last)
	}
}

// InitGroup makes every app_group series exist at 0 before any event.
func TestInitGroup(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.InitGroup("eu")
	for name, want := range map[string]int{
		"sendid_jobs_total":                len(finalStatuses),
		"sendid_jobs_admitted_total":       1,
		"sendid_jobs_deferred_total":       1,
		"sendid_jobs_dead_lettered_total":  1,
		"sendid_braze_requests_total":      len(initCodes),
		"sendid_braze_config_faults_total": 1,
		"sendid_lane_paused":               len(pauseReasons),
		"sendid_infra_errors_total":        len(infraStages),
	} {
		if got, err := testutil.GatherAndCount(reg, name); err != nil || got != want {
			t.Errorf("%s: %d series (%v), want %d", name, got, err, want)
		}
	}
}

// Every stage the worker's code passes to InfraFailures is created at 0 by
// NewMetrics: the stage literals given to InfraFailures, putBack and
// retryLater, and those records returns.
func TestInfraStagesInitialised(t *testing.T) {
	patterns := []*regexp.Regexp{
		regexp.MustCompile(`InfraFailures\.WithLabelValues\("([a-z_]*)"`),
		regexp.MustCompile(`putBack\(j, "([a-z_]*)"`),
		regexp.MustCompile(`retryLater\([^,]+, "([a-z_]*)"`),
		regexp.MustCompile(`"([a-z_]+)", (?:err|pairErr)\s*$`),
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, re := range patterns {
				if m := re.FindStringSubmatch(line); m != nil {
					found++
					if !slices.Contains(infraStages, m[1]) {
						t.Errorf("%s: stage %q is not in infraStages", f, m[1])
					}
				}
			}
		}
	}
	if found < 5 {
		t.Errorf("found %d stage literals: the patterns no longer match the code", found)
	}
}
