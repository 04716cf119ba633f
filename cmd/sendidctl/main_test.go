package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
	"go.uber.org/zap/zaptest"
)

func buildWorker(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sendid-worker")
	cmd := exec.Command("go", "build", "-o", bin, "../sendid-worker")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	return bin
}

// startWorker runs the worker binary with env until the test ends (SIGTERM).
func startWorker(t *testing.T, bin string, env map[string]string, args ...string) {
	t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	env["SENDID_HTTP_ADDR"] = httpAddr
	env["PATH"], env["HOME"] = os.Getenv("PATH"), os.Getenv("HOME")
	cmd := exec.Command(bin, args...)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("worker exit: %v", err)
		}
		if t.Failed() {
			t.Logf("worker output:\n%s", tail(out.String(), 6000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not ready: %s", tail(out.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// ctl runs sendidctl in-process.
func ctl(t *testing.T, server string, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := func(k string) string {
		if k == "SENDID_NATS_URL" {
			return server
		}
		return ""
	}
	code := run(context.Background(), args, env, strings.NewReader(""), &out, &errOut)
	return code, out.String() + errOut.String()
}

func TestSubmitWaitAndQuotaAgainstDevWorker(t *testing.T) {
	t.Parallel()
	bin := buildWorker(t)
	server := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t))
	startWorker(t, bin, map[string]string{"SENDID_NATS_URL": server, "SENDID_DAILY_CAP": "2", "SENDID_BURST": "2",
		"SENDID_QUOTA_PERIOD": "15s"}, "-dev", "-dev-dir", t.TempDir())

	code, out := ctl(t, server, "submit", "--campaign", "c", "--send-id", "a", "--wait")
	if code != 0 || !strings.HasPrefix(out, "created  job ") || !strings.Contains(out, "send_id a") {
		t.Fatalf("submit --wait: %d %q", code, out)
	}
	code, out = ctl(t, server, "submit", "--campaign", "c", "--send-id", "b", "--id", "job-b", "--wait", "--json")
	if code != 0 || !strings.Contains(out, `"status":"created"`) || !strings.Contains(out, `"id":"job-b"`) {
		t.Fatalf("submit --wait --json: %d %q", code, out)
	}
	// The quota is spent: the next job is deferred, then created.
	code, out = ctl(t, server, "submit", "--campaign", "c", "--send-id", "c", "--wait", "--timeout", "40s")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "deferred ") || !strings.HasPrefix(lines[1], "created ") {
		t.Fatalf("over quota: %d %q", code, out)
	}
	// quota shows what the ledger holds.
	code, out = ctl(t, server, "quota", "default", "--json")
	var st []worker.GroupStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st) != 1 {
		t.Fatalf("quota: %d %q", code, out)
	}
	usage := ledgerUsage(t, server, "default", quota.Policy{Cap: 2, Burst: 2, Period: 15 * time.Second})
	if st[0].Cap != usage.Cap || st[0].Used != usage.Used || st[0].Remaining != usage.Remaining || !st[0].NextReset.Equal(usage.PeriodEnd.UTC()) {
		t.Fatalf("quota %+v, ledger %+v", st[0], usage)
	}
	code, out = ctl(t, server, "quota")
	if code != 0 || !strings.Contains(out, "APP GROUP") || !strings.Contains(out, "default") {
		t.Fatalf("quota table: %d %q", code, out)
	}
	if code, _ := ctl(t, server, "quota", "nope"); code != 1 {
		t.Errorf("quota of an unknown group: exit %d", code)
	}
	if code, _ := ctl(t, server, "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}

func TestDeadReplayAndPauseOnTwoReplicas(t *testing.T) {
	t.Parallel()
	bin := buildWorker(t)
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{FailFirst: 2, FailFirstStatus: 503})
	t.Cleanup(sim.Close)
	env := func() map[string]string {
		// 11 calls: more than the default burst of 10, which both replicas
		// share (one pacer per group).
		return map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_BRAZE_URL": sim.URL, "SENDID_BRAZE_API_KEY": "k",
			"SENDID_MAX_ATTEMPTS": "2", "SENDID_LOG_LEVEL": "warn", "SENDID_BURST": "20"}
	}
	startWorker(t, bin, env())
	startWorker(t, bin, env())
	server := ns.URL()

	// Two 503s exhaust two attempts: failed, dead-lettered.
	nc, _ := ns.Connect()
	sub, err := nc.SubscribeSync("test.dead")
	if err != nil {
		t.Fatal(err)
	}
	if code, out := ctl(t, server, "submit", "--campaign", "c", "--send-id", "d1", "--id", "dead-1", "--reply-to", "test.dead"); code != 0 {
		t.Fatalf("submit: %d %q", code, out)
	}
	m, err := sub.NextMsg(20 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"code":"retries_exhausted"`) {
		t.Fatalf("dead job: %v %+v", err, m)
	}
	code, out := ctl(t, server, "dead", "ls")
	if code != 0 || !strings.Contains(out, "dead-1") {
		t.Fatalf("dead ls: %d %q", code, out)
	}
	code, out = ctl(t, server, "dead", "replay", "dead-1", "--reply-to", "test.replayed")
	if code != 0 || !strings.Contains(out, "replayed 1") {
		t.Fatalf("replay: %d %q", code, out)
	}
	sub2, err := nc.SubscribeSync("test.replayed")
	if err != nil {
		t.Fatal(err)
	}
	m, err = sub2.NextMsg(20 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"status":"created"`) || !strings.Contains(string(m.Data), `"id":"dead-1"`) {
		t.Fatalf("replayed job: %v %+v", err, m)
	}
	if _, out = ctl(t, server, "dead", "ls", "--json"); strings.Contains(out, "dead-1") {
		t.Fatalf("dead letter still listed after replay: %s", out)
	}

	// Pause stops both replicas; resume restarts them.
	if code, out = ctl(t, server, "pause", "default"); code != 0 {
		t.Fatalf("pause: %d %q", code, out)
	}
	calls := len(sim.Requests())
	for i := range 4 {
		if code, out = ctl(t, server, "submit", "--campaign", "c", "--send-id", fmt.Sprint("p", i)); code != 0 {
			t.Fatalf("submit: %d %q", code, out)
		}
	}
	time.Sleep(2 * time.Second)
	if n := len(sim.Requests()); n != calls {
		t.Fatalf("%d calls while paused", n-calls)
	}
	code, out = ctl(t, server, "quota", "--json")
	if code != 0 || !strings.Contains(out, `"paused":true`) || !strings.Contains(out, `"pause_reason":"operator"`) || !strings.Contains(out, `"backlog":4`) {
		t.Fatalf("quota while paused: %q", out)
	}
	if code, out = ctl(t, server, "resume", "default"); code != 0 {
		t.Fatalf("resume: %d %q", code, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(sim.Requests()) < calls+4*2 { // two attempts each (both 503)
		if time.Now().After(deadline) {
			t.Fatalf("after resume: %d calls", len(sim.Requests())-calls)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The four jobs end dead-lettered: dead rm removes one, then the rest.
	var dead []queue.DeadLetter
	deadline = time.Now().Add(20 * time.Second)
	for {
		code, out = ctl(t, server, "dead", "ls", "--json")
		if code == 0 && json.Unmarshal([]byte(out), &dead) == nil && len(dead) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters after resume: %d %q", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	gone := dead[1].Job.ID
	if code, out = ctl(t, server, "dead", "rm", gone); code != 0 || !strings.Contains(out, "removed 1 job(s): "+gone) {
		t.Fatalf("dead rm: %d %q", code, out)
	}
	if code, out = ctl(t, server, "dead", "ls"); code != 0 || strings.Contains(out, gone) || !strings.Contains(out, dead[0].Job.ID) || !strings.Contains(out, dead[3].Job.ID) {
		t.Fatalf("dead ls after rm: %d %q", code, out)
	}
	if code, out = ctl(t, server, "dead", "rm", "--all", "--json"); code != 0 || !strings.Contains(out, dead[0].Job.ID) || strings.Contains(out, gone) {
		t.Fatalf("dead rm --all: %d %q", code, out)
	}
	if code, out = ctl(t, server, "dead", "ls", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("dead ls after rm --all: %d %q", code, out)
	}
}

// ledgerUsage reads the group's current period straight from the KV ledger.
func ledgerUsage(t *testing.T, server, group string, pol quota.Policy) quota.Usage {
	t.Helper()
	nc, err := nats.Connect(server)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), "SENDID_LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	pols := quota.NewPolicies(zaptest.NewLogger(t))
	pols.Set(group, pol)
	u, err := quota.NewKV(kv, pols, quota.SystemClock{}).Usage(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
