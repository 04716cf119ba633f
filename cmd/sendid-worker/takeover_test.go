package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
)

// TestReplicaTakeover runs two worker processes on one group, with a 200ms
// Braze latency so that a kill lands in a call. The first owns the group;
// the second, started later, pulls without receiving and is ready. The
// owner is SIGKILLed at work (usually mid-call): the other takes the group
// over and every job is answered, its pairs first called in publish order. Then a third process
// joins and the new owner gets SIGTERM: the third takes over. The test
// reports both takeover times (the owner's kill, or its exit after SIGTERM →
// the next call at the simulator) against the failover time; it asserts no
// timing.
func TestReplicaTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills subprocesses")
	}
	t.Parallel()
	const jobs = 60
	bin := buildWorker(t)
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{DefaultCap: 1 << 20, Latency: 200 * time.Millisecond})
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	start := func(name string) (*proc, *daemon) {
		addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
		env := []string{
			"SENDID_NATS_URL=" + ns.URL(), "SENDID_BRAZE_URL=" + sim.URL, "SENDID_BRAZE_API_KEY=k",
			"SENDID_DAILY_CAP=1000000", "SENDID_BURST=1000", "SENDID_LOG_LEVEL=warn", "SENDID_SHUTDOWN_TIMEOUT=5s",
			"SENDID_BRAZE_TIMEOUT=4s",
			"SENDID_HTTP_ADDR=" + addr, "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		}
		logPath := filepath.Join(dir, name+".log")
		t.Cleanup(func() {
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				if len(b) > 4000 {
					b = b[len(b)-4000:]
				}
				t.Logf("%s log (tail):\n%s", name, b)
			}
		})
		p := spawn(t, bin, env, logPath)
		d := &daemon{http: "http://" + addr}
		waitFor(t, name+" ready", 30*time.Second, func() bool { return d.status("/readyz") == 200 })
		return p, d
	}
	// nextCall is the first call the simulator received after t0.
	nextCall := func(t0 time.Time) time.Time {
		var first time.Time
		waitFor(t, "a call after the owner stopped", 60*time.Second, func() bool {
			for _, r := range sim.Requests() {
				if r.At.After(t0) && (first.IsZero() || r.At.Before(first)) {
					first = r.At
				}
			}
			return !first.IsZero()
		})
		return first
	}

	nc, _ := ns.Connect()
	res := subscribe(t, nc, "test.results")
	a, _ := start("a")
	publishJobs(t, nc, jobs, "t")
	waitFor(t, "a at work", 30*time.Second, func() bool { return res.finals() >= 3 })
	b, bd := start("b") // ready while a owns the group
	waitFor(t, "progress", 30*time.Second, func() bool { return res.finals() >= 8 })
	if bd.status("/readyz") != 200 {
		t.Fatal("a replica that does not own the group must be ready")
	}
	killed := time.Now()
	_ = a.cmd.Process.Signal(syscall.SIGKILL)
	_ = a.cmd.Wait()
	a.log.Close()
	afterKill := nextCall(killed).Sub(killed)

	waitFor(t, "progress after the kill", 60*time.Second, func() bool { return res.finals() >= 30 })
	c, _ := start("c")
	waitFor(t, "progress with c", 30*time.Second, func() bool { return res.finals() >= 35 })
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM exit: %v", err)
	}
	stopped := time.Now() // b finished its call in flight and handed over
	b.log.Close()
	afterStop := nextCall(stopped).Sub(stopped)
	waitFor(t, "every job answered", 90*time.Second, func() bool { return res.finals() == jobs })
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
	c.log.Close()

	// Pairs are first called in publish order; the job in flight at the
	// kill may be called again right after it.
	reqs := sim.Requests()
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].At.Before(reqs[j].At) })
	next := 0
	for _, r := range reqs {
		var n int
		if _, err := fmt.Sscanf(r.SendID, "t-%d", &n); err != nil {
			t.Fatalf("send_id %q", r.SendID)
		}
		switch {
		case n == next:
			next++
		case n > next:
			t.Errorf("t-%d called before t-%d", n, next)
		}
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	for i := range jobs {
		rs := res.by[fmt.Sprintf("t-%d", i)]
		if len(rs) == 0 || rs[len(rs)-1].Status != "created" {
			t.Errorf("t-%d: %+v", i, rs)
		}
	}
	t.Logf("takeover (failover 5s, Braze latency 200ms): after SIGKILL of the owner at work %s; after the owner's exit on SIGTERM %s; %d calls for %d jobs",
		afterKill.Round(10*time.Millisecond), afterStop.Round(10*time.Millisecond), len(reqs), jobs)
}
