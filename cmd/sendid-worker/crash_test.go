package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
)

// buildWorker compiles this command into dir.
func buildWorker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sendid-worker")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

type proc struct {
	cmd *exec.Cmd
	log *os.File
}

func spawn(t *testing.T, bin string, env []string, logPath string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: f}
	t.Cleanup(func() { // whatever happened, leave no process behind
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

// TestCrashRecovery kills the worker process with SIGKILL three times in the
// middle of 300 jobs and restarts it: every job gets a final result, no pair
// recorded as created is sent again, and the number of pairs that reached
// Braze twice (only possible for a kill between Braze's answer and the pair
// record) is reported. The last stop is a SIGTERM, which must exit 0.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a subprocess")
	}
	t.Parallel()
	const jobs = 300
	bin := buildWorker(t)
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{DefaultCap: 1 << 20, Latency: 5 * time.Millisecond})
	t.Cleanup(sim.Close)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	env := []string{
		"SENDID_NATS_URL=" + ns.URL(), "SENDID_BRAZE_URL=" + sim.URL, "SENDID_BRAZE_API_KEY=k",
		"SENDID_DAILY_CAP=1000000", "SENDID_BURST=1000", "SENDID_LOG_LEVEL=warn", "SENDID_SHUTDOWN_TIMEOUT=5s", "SENDID_BRAZE_TIMEOUT=4s",
		"SENDID_HTTP_ADDR=" + httpAddr, "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
	}
	logPath := filepath.Join(t.TempDir(), "worker.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("worker log (tail):\n%s", b)
		}
	})
	nc, _ := ns.Connect()
	res := subscribe(t, nc, "test.results")
	p := spawn(t, bin, env, logPath)
	d := &daemon{http: "http://" + httpAddr}
	waitFor(t, "worker ready", 30*time.Second, func() bool { return d.status("/readyz") == 200 })
	publishJobs(t, nc, jobs, "crash")

	rng := rand.New(rand.NewPCG(1, 2))
	for kill := 1; kill <= 3; kill++ {
		// Let it make progress, then kill it at a random point.
		target := min(res.finals()+10+rng.IntN(60), jobs-1)
		waitFor(t, fmt.Sprintf("progress to %d before kill %d", target, kill), 60*time.Second, func() bool { return res.finals() >= target })
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
		p.log.Close()
		t.Logf("kill %d after %d final results", kill, res.finals())
		p = spawn(t, bin, env, logPath)
	}
	waitFor(t, "every job answered", 90*time.Second, func() bool { return res.finals() == jobs })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM exit: %v", err)
	}
	p.log.Close()

	st := sim.Stats()
	res.mu.Lock()
	defer res.mu.Unlock()
	for i := range jobs {
		id := fmt.Sprintf("crash-%d", i)
		rs := res.by[id]
		if len(rs) == 0 || rs[len(rs)-1].Status != "created" {
			t.Errorf("%s: %+v", id, rs)
		}
	}
	// A pair sent twice must be one whose first answer was never recorded.
	t.Logf("jobs %d, results published %d, Braze calls %d, created %d, pairs that reached Braze twice: %d",
		jobs, res.all, st.Calls, st.Created, st.PairsTwice)
	// Every pair that reached Braze twice had a call in doubt, and its job's
	// result says so (in_doubt: retry, the default).
	calls := map[string]int{}
	for _, r := range sim.Requests() {
		calls[r.SendID]++
	}
	inDoubt := 0
	for i := range jobs {
		id := fmt.Sprintf("crash-%d", i)
		rs := res.by[id]
		if len(rs) == 0 {
			continue
		}
		if rs[len(rs)-1].InDoubt {
			inDoubt++
		}
		if calls[id] > 1 && !rs[len(rs)-1].InDoubt {
			t.Errorf("%s reached Braze %d times but its result does not say in_doubt: %+v", id, calls[id], rs[len(rs)-1])
		}
	}
	t.Logf("results with in_doubt: %d", inDoubt)
	if st.PairsTwice > 3 {
		t.Errorf("%d pairs reached Braze twice over 3 kills; at most one per kill is possible", st.PairsTwice)
	}
}
