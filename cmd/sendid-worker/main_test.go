package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	err := run(context.Background(), []string{"-check-config"}, envMap(map[string]string{
		"SENDID_BRAZE_URL": "https://rest.iad-01.braze.com", "SENDID_BRAZE_API_KEY": "k"}), nil, &out)
	if err != nil || !strings.Contains(out.String(), "configuration ok") {
		t.Fatalf("%v %q", err, out.String())
	}
	for name, e := range map[string]map[string]string{
		"no url":        {"SENDID_BRAZE_API_KEY": "k"},
		"no key":        {"SENDID_BRAZE_URL": "https://rest.iad-01.braze.com"},
		"plain http":    {"SENDID_BRAZE_URL": "http://rest.iad-01.braze.com", "SENDID_BRAZE_API_KEY": "k"},
		"bad cap":       {"SENDID_BRAZE_URL": "https://rest.iad-01.braze.com", "SENDID_BRAZE_API_KEY": "k", "SENDID_DAILY_CAP": "0"},
		"bad file path": {"SENDID_CONFIG": "/nonexistent.yaml"},
	} {
		err := run(context.Background(), []string{"-check-config"}, envMap(e), nil, io.Discard)
		if err == nil || exitCode(err) != 2 {
			t.Errorf("%s: err %v, exit %d", name, err, exitCode(err))
		}
	}
	if err := run(context.Background(), []string{"-nope"}, envMap(nil), nil, io.Discard); exitCode(err) != 2 {
		t.Errorf("bad flag: %v", err)
	}
	var ce *config.Error
	if err := run(context.Background(), nil, envMap(map[string]string{"SENDID_BRAZE_URL": "http://10.1.1.1", "SENDID_BRAZE_API_KEY": "k", "SENDID_HTTP_ADDR": "127.0.0.1:0"}), nil, io.Discard); !errors.As(err, &ce) {
		t.Errorf("non-loopback http: %v", err)
	}
}

// daemon runs run() in-process until the test ends.
type daemon struct {
	cancel context.CancelFunc
	done   chan error
	http   string
}

func startDaemon(t *testing.T, env map[string]string, args ...string) *daemon {
	t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	env["SENDID_HTTP_ADDR"] = httpAddr
	if env["SENDID_LOG_LEVEL"] == "" {
		env["SENDID_LOG_LEVEL"] = "warn"
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &daemon{cancel: cancel, done: make(chan error, 1), http: "http://" + httpAddr}
	go func() { d.done <- run(ctx, args, envMap(env), nil, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-d.done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	return d
}

func (d *daemon) status(path string) int {
	resp, err := http.Get(d.http + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// results subscribes to subject and collects results by job id.
type results struct {
	mu  sync.Mutex
	by  map[string][]queue.Result
	all int
}

func subscribe(t *testing.T, nc *nats.Conn, subject string) *results {
	t.Helper()
	r := &results{by: map[string][]queue.Result{}}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var res queue.Result
		if json.Unmarshal(m.Data, &res) != nil {
			t.Errorf("bad result %s", m.Data)
			return
		}
		r.mu.Lock()
		r.by[res.ID] = append(r.by[res.ID], res)
		r.all++
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	_ = nc.Flush()
	return r
}

func (r *results) finals() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rs := range r.by {
		for _, x := range rs {
			if x.Status != queue.StatusDeferred {
				n++
				break
			}
		}
	}
	return n
}

func publishJobs(t *testing.T, nc *nats.Conn, n int, prefix string) {
	t.Helper()
	for i := range n {
		body := fmt.Sprintf(`{"campaign_id":"c","send_id":"%s-%d","id":"%s-%d","reply_to":"test.results"}`, prefix, i, prefix, i)
		if err := nc.Publish("sendid.jobs", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// /readyz is 503 while NATS is unreachable and 200 once it is up.
func TestReadyzFollowsNATS(t *testing.T) {
	t.Parallel()
	sim := brazetest.NewServer(brazetest.Options{})
	t.Cleanup(sim.Close)
	port := natstest.FreePort(t)
	d := startDaemon(t, map[string]string{
		"SENDID_NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", port), "SENDID_BRAZE_URL": sim.URL, "SENDID_BRAZE_API_KEY": "k",
	})
	waitFor(t, "healthz", 10*time.Second, func() bool { return d.status("/healthz") == 200 })
	if got := d.status("/readyz"); got != 503 {
		t.Fatalf("/readyz = %d without NATS, want 503", got)
	}
	natstest.StartOn(t, port)
	waitFor(t, "/readyz 200 after NATS starts", 20*time.Second, func() bool { return d.status("/readyz") == 200 })
}

// A 401 fails no job; correcting the key file (no restart) resumes the lane.
func TestKeyFileRotation(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "right-key"}}})
	t.Cleanup(sim.Close)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("wrong-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_BRAZE_URL": sim.URL, "SENDID_BRAZE_API_KEY_FILE": keyFile})
	waitFor(t, "ready", 20*time.Second, func() bool { return d.status("/readyz") == 200 })
	nc, _ := ns.Connect()
	res := subscribe(t, nc, "test.results")
	publishJobs(t, nc, 3, "rot")
	waitFor(t, "a 401 at the simulator", 10*time.Second, func() bool { return len(sim.Requests()) > 0 })
	time.Sleep(500 * time.Millisecond)
	if n := res.finals(); n != 0 {
		t.Fatalf("%d jobs answered with a wrong key", n)
	}
	if err := os.WriteFile(keyFile, []byte("right-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 created results after the key file changed", 20*time.Second, func() bool { return res.finals() == 3 })
	res.mu.Lock()
	defer res.mu.Unlock()
	for id, rs := range res.by {
		if rs[len(rs)-1].Status != "created" {
			t.Errorf("%s: %+v", id, rs)
		}
	}
}

// metric returns the value of the sample whose line starts with name{labels}.
func metric(t *testing.T, d *daemon, sample string) float64 {
	t.Helper()
	resp, err := http.Get(d.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// /metrics shows job counters, Braze requests and the quota gauges moving.
func TestMetricsMove(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{})
	t.Cleanup(sim.Close)
	d := startDaemon(t, map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_BRAZE_URL": sim.URL, "SENDID_BRAZE_API_KEY": "k", "SENDID_DAILY_CAP": "50"})
	waitFor(t, "ready", 20*time.Second, func() bool { return d.status("/readyz") == 200 })
	created := `sendid_jobs_total{app_group="default",status="created"}`
	used, remaining := `sendid_quota_used{app_group="default"}`, `sendid_quota_remaining{app_group="default"}`
	requests := `sendid_braze_requests_total{app_group="default",code="201"}`
	// The quota gauges come from memory, filled by a background read at
	// start; an idle lane's probe holds a slot for a moment.
	waitFor(t, "quota gauges", 10*time.Second, func() bool { return metric(t, d, remaining) == 50 && metric(t, d, used) == 0 })
	if c, n := metric(t, d, created), metric(t, d, `sendid_nats_connected`); c != 0 || n != 1 {
		t.Fatalf("before: created %v nats_connected %v", c, n)
	}
	nc, _ := ns.Connect()
	res := subscribe(t, nc, "test.results")
	publishJobs(t, nc, 2, "m")
	waitFor(t, "2 results", 10*time.Second, func() bool { return res.finals() == 2 })
	// An idle lane's probe holds a slot for a moment; wait for the ledger to settle.
	waitFor(t, "used 2, remaining 48", 10*time.Second, func() bool { return metric(t, d, used) == 2 && metric(t, d, remaining) == 48 })
	if metric(t, d, created) != 2 || metric(t, d, requests) != 2 ||
		metric(t, d, `sendid_braze_request_duration_seconds_count{app_group="default"}`) != 2 {
		t.Fatalf("after: created %v used %v remaining %v requests %v", metric(t, d, created), metric(t, d, used), metric(t, d, remaining), metric(t, d, requests))
	}
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSecretsNeverPrinted runs the daemon at debug level through rejected
// keys, a key rotation, successes, gateway requests with good, rotated-out,
// unknown and gateway tokens, and a SIGHUP reload, and greps every byte it
// printed, its metrics, its log-level endpoint, the gateway's answers and
// -check-config output for the keys and tokens.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	const wrong, right, admin = "sk-WRONG-0123456789abcdef", "sk-RIGHT-fedcba9876543210", "adm-SECRET-0123456789abcdef"
	ns := natstest.Start(t)
	// (A server echoing the key back is covered by braze's TestKeyNeverPrinted.)
	sim := brazetest.NewServer(brazetest.Options{Workspaces: []brazetest.Workspace{{Key: right}}})
	t.Cleanup(sim.Close)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	const gwToken, unknownToken = "gwtok-SECRET-31415926535", "sk-UNKNOWN-2718281828"
	cfgFile := filepath.Join(t.TempDir(), "sendid.yaml")
	if err := os.WriteFile(cfgFile, []byte("app_groups:\n  default:\n    gateway_tokens_env: TEST_GATEWAY_TOKENS\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_BRAZE_URL": sim.URL, "SENDID_BRAZE_API_KEY_FILE": keyFile,
		"SENDID_LOG_LEVEL": "debug", "SENDID_HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)),
		"SENDID_CONFIG": cfgFile, "TEST_GATEWAY_TOKENS": gwToken, "SENDID_GATEWAY_ADDR": fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)), "SENDID_ADMIN_TOKEN": admin}
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envMap(env), hup, &out) }()
	d := &daemon{http: "http://" + env["SENDID_HTTP_ADDR"]}
	waitFor(t, "ready", 20*time.Second, func() bool { return d.status("/readyz") == 200 })
	nc, _ := ns.Connect()
	res := subscribe(t, nc, "test.results")
	publishJobs(t, nc, 3, "sec")
	waitFor(t, "a 401", 10*time.Second, func() bool { return len(sim.Requests()) > 0 })
	if err := os.WriteFile(keyFile, []byte(right), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 results", 20*time.Second, func() bool { return res.finals() == 3 })
	var scraped strings.Builder
	gw := "http://" + env["SENDID_GATEWAY_ADDR"]
	for i, c := range []struct {
		token string
		want  int
	}{{right, 201}, {gwToken, 201}, {wrong, 401}, {unknownToken, 401}, {"", 401}} {
		req, _ := http.NewRequest(http.MethodPost, gw+"/sends/id/create", strings.NewReader(fmt.Sprintf(`{"campaign_id":"c","send_id":"gw-%d"}`, i)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+c.token)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("gw-job-%d", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("gateway request %d: %d %s, want %d", i, resp.StatusCode, b, c.want)
		}
		fmt.Fprintln(&scraped, resp.Header, string(b))
		req, _ = http.NewRequest(http.MethodGet, gw+fmt.Sprintf("/jobs/gw-job-%d", i), nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		if resp, err = http.DefaultClient.Do(req); err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintln(&scraped, resp.Header, string(b))
	}
	hup <- syscall.SIGHUP
	time.Sleep(200 * time.Millisecond)

	for _, p := range []string{"/metrics", "/loglevel", "/readyz", "/healthz", "/ui", "/ui/groups/default", "/ui/groups/nosuch"} {
		resp, err := http.Get(d.http + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		scraped.Write(b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var check strings.Builder
	_ = run(context.Background(), []string{"-check-config"}, envMap(env), nil, &check)

	all := out.String() + scraped.String() + check.String()
	if !strings.Contains(out.String(), "BRAZE REJECTED THE CONFIGURATION") || !strings.Contains(out.String(), "configuration reloaded") {
		t.Fatalf("the run did not go through the 401 and the reload:\n%s", tail(out.String(), 3000))
	}
	if !strings.Contains(out.String(), "gateway listening") {
		t.Fatalf("the gateway did not run:\n%s", tail(out.String(), 3000))
	}
	if !strings.Contains(scraped.String(), `data-group="default"`) {
		t.Fatal("the operator page was not scraped")
	}
	for _, k := range []string{wrong, right, wrong[3:], right[3:], gwToken, gwToken[6:], unknownToken, unknownToken[3:], admin, admin[4:]} {
		if strings.Contains(all, k) {
			t.Fatalf("secret %q printed", k)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
