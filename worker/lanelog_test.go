package worker

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sendid/sendid/quota"
)

// TestLanePausedLoggedOnChange: a pause repeated for the same reason with
// no job done in between (a spent quota looked at again every few minutes)
// is logged at debug; the first one, a new reason, or the first after a job
// is logged at info.
func TestLanePausedLoggedOnChange(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	w := &Worker{o: Options{Clock: quota.SystemClock{}, Metrics: NewMetrics(prometheus.NewRegistry())}, log: zap.New(core)}
	l := newLane(w, Group{Name: "eu"})
	ctx := context.Background()
	pause := func(reason string) { l.pause(ctx, time.Now().Add(time.Millisecond), reason) }
	pause("quota")
	pause("quota")
	pause("quota")
	pause("rate_limited")
	pause("quota")
	l.lastPause = "" // what run does after a job
	pause("quota")
	var got []string
	for _, e := range logs.FilterMessage("lane paused").All() {
		got = append(got, e.Level.String()+" "+e.ContextMap()["reason"].(string))
	}
	want := []string{"info quota", "debug quota", "debug quota", "info rate_limited", "info quota", "info quota"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
