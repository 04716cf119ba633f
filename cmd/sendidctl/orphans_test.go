package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

// workerProc is a worker subprocess the test stops when it wants.
type workerProc struct {
	cmd  *exec.Cmd
	http string
	out  *lockedBuffer
	once sync.Once
}

// lockedBuffer is a bytes.Buffer the subprocess and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runWorkerWith starts the worker binary with app groups (name → key
// variable) and waits until it is ready.
func runWorkerWith(t *testing.T, bin string, env map[string]string, groups map[string]string) *workerProc {
	t.Helper()
	var cfg strings.Builder
	cfg.WriteString("app_groups:\n")
	for g, keyVar := range groups {
		fmt.Fprintf(&cfg, "  %s: {api_key_env: %s}\n", g, keyVar)
	}
	path := filepath.Join(t.TempDir(), "sendid.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &workerProc{http: fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)), out: &lockedBuffer{}}
	p.cmd = exec.Command(bin)
	p.cmd.Env = []string{"SENDID_CONFIG=" + path, "SENDID_HTTP_ADDR=" + p.http, "SENDID_LOG_LEVEL=info", "PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker not ready: %s", tail(p.out.String(), 3000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *workerProc) stop(t *testing.T) {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("worker exit: %v\n%s", err, tail(p.out.String(), 3000))
		}
	})
}

func (p *workerProc) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// readyCount is how many messages wait on a group's ready subject.
func readyCount(t *testing.T, js jetstream.JetStream, group string) uint64 {
	t.Helper()
	st, err := js.Stream(context.Background(), queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("sendid.ready."+group))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects["sendid.ready."+group]
}

// Two groups removed with 5 jobs each in their FIFO: after a restart the
// worker reports them (log, sendid_orphaned_jobs, sendidctl orphans);
// `orphans fail eu` answers eu's 5 failed / unknown_app_group; configuring
// us again creates us's 5 instead.
func TestOrphanedGroups(t *testing.T) {
	t.Parallel()
	bin := buildWorker(t)
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "good"}}})
	t.Cleanup(sim.Close)
	env := map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_BRAZE_URL": sim.URL, "GOOD_KEY": "good", "BAD_KEY": "bad"}
	nc, js := ns.Connect()
	var (
		mu      sync.Mutex
		results = map[string][]queue.Result{} // by job id
	)
	sub, err := nc.Subscribe("test.orphans", func(m *nats.Msg) {
		var r queue.Result
		if json.Unmarshal(m.Data, &r) == nil {
			mu.Lock()
			results[r.ID] = append(results[r.ID], r)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	final := func(id string) (queue.Result, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results[id] {
			if r.Status != queue.StatusDeferred {
				return r, true
			}
		}
		return queue.Result{}, false
	}

	// 1. eu and us run with a key Braze refuses: their jobs wait, none fails.
	first := runWorkerWith(t, bin, env, map[string]string{"default": "GOOD_KEY", "eu": "BAD_KEY", "us": "BAD_KEY"})
	for _, g := range []string{"eu", "us"} {
		for i := range 5 {
			body := fmt.Sprintf(`{"campaign_id":"c","send_id":"%s-%d","id":"%s-%d","reply_to":"test.orphans"}`, g, i, g, i)
			if err := nc.Publish("sendid.jobs."+g, []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for readyCount(t, js, "eu") != 5 || readyCount(t, js, "us") != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("jobs not admitted: eu %d, us %d", readyCount(t, js, "eu"), readyCount(t, js, "us"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	first.stop(t)

	// 2. Restarted without them: the orphans are reported.
	second := runWorkerWith(t, bin, env, map[string]string{"default": "GOOD_KEY"})
	deadline = time.Now().Add(20 * time.Second)
	for m := second.metrics(t); !strings.Contains(m, `sendid_orphaned_jobs{app_group="eu"} 5`) || !strings.Contains(m, `sendid_orphaned_jobs{app_group="us"} 5`); m = second.metrics(t) {
		if time.Now().After(deadline) {
			t.Fatalf("sendid_orphaned_jobs not 5 and 5:\n%s", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(second.out.String(), "admitted jobs wait for an app group that is not configured") {
		t.Fatalf("no log line for the orphans:\n%s", tail(second.out.String(), 3000))
	}
	code, out := ctl(t, ns.URL(), "orphans")
	if code != 0 || !strings.Contains(out, "eu") || !strings.Contains(out, "us") {
		t.Fatalf("orphans: %d %q", code, out)
	}
	if code, out := ctl(t, ns.URL(), "orphans", "fail", "default"); code != 1 || !strings.Contains(out, "is configured") {
		t.Fatalf("orphans fail of a configured group: %d %q", code, out)
	}
	code, out = ctl(t, ns.URL(), "orphans", "fail", "eu")
	if code != 0 || !strings.Contains(out, "5 job(s) of app group eu") {
		t.Fatalf("orphans fail eu: %d %q", code, out)
	}
	for i := range 5 {
		id := fmt.Sprintf("eu-%d", i)
		deadline := time.Now().Add(10 * time.Second)
		r, ok := final(id)
		for ; !ok; r, ok = final(id) {
			if time.Now().After(deadline) {
				t.Fatalf("%s not answered", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if r.Status != queue.StatusFailed || r.Error == nil || r.Error.Code != queue.CodeUnknownAppGroup || r.AppGroup != "eu" {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if n := readyCount(t, js, "eu"); n != 0 {
		t.Fatalf("%d eu jobs left after orphans fail", n)
	}
	code, out = ctl(t, ns.URL(), "orphans", "--json")
	if code != 0 || strings.Contains(out, `"eu"`) || !strings.Contains(out, `{"app_group":"us","jobs":5}`) {
		t.Fatalf("orphans after fail: %d %q", code, out)
	}
	if m := second.metrics(t); strings.Contains(m, `sendid_orphaned_jobs{app_group="eu"}`) {
		t.Fatal("eu still reported orphaned")
	}
	second.stop(t)

	// 3. us configured again (with a key Braze accepts): its jobs are created.
	runWorkerWith(t, bin, env, map[string]string{"default": "GOOD_KEY", "us": "GOOD_KEY"})
	for i := range 5 {
		id := fmt.Sprintf("us-%d", i)
		deadline := time.Now().Add(20 * time.Second)
		r, ok := final(id)
		for ; !ok; r, ok = final(id) {
			if time.Now().After(deadline) {
				t.Fatalf("%s not answered after us came back", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if r.Status != queue.StatusCreated {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if code, out := ctl(t, ns.URL(), "orphans", "--json"); code != 0 || strings.Contains(out, `"app_group"`) {
		t.Fatalf("orphans with every group configured: %d %q", code, out)
	}
}
