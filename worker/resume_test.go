package worker_test

import (
	"testing"
	"time"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// A reload (or an operator's wake-up) while the lane is not paused must
// not shorten the next configuration-fault pause: with a stale resume token
// left behind, the lane called Braze again at once with the same bad key.
func TestResumeLeavesNoStaleToken(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{
		groups: map[string]quota.Policy{"default": pol},
		keys:   map[string]string{"default": "wrong"},
		sim:    brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "right"}}},
	})
	// Not paused: these must leave nothing behind.
	for range 3 {
		if err := k.w.Reload([]worker.Group{{Name: "default", Key: braze.Key("wrong"), Sender: k.client, Policy: pol}}); err != nil {
			t.Fatal(err)
		}
	}
	k.publish("sendid.jobs", job("c", "s1", "j1", "test.j1"))
	waitUntil(t, "the lane paused for the configuration fault", 10*time.Second, func() bool {
		for _, l := range k.w.Lanes() {
			if l.Group == "default" && l.PauseReason == "config_fault" {
				return true
			}
		}
		return false
	})
	// The first backoff is at least 2.5s; a stale token ends it at once
	// and the lane calls again.
	time.Sleep(time.Second)
	if n := len(k.sim.Requests()); n != 1 {
		t.Fatalf("%d calls with the wrong key; the pause should have held after the first", n)
	}
	if got := k.results.finals(); len(got) != 0 {
		t.Fatalf("job answered while the key is wrong: %+v", got)
	}
}
