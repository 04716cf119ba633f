package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
)

// groupsConfig writes a configuration file with n app groups g000… sharing
// one key variable.
func groupsConfig(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("app_groups:\n")
	for i := range n {
		fmt.Fprintf(&b, "  g%03d:\n    api_key_env: TEST_KEY\n", i)
	}
	path := filepath.Join(t.TempDir(), "sendid.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (d *daemon) body(path string) (int, string) {
	resp, err := http.Get(d.http + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// An account limited to 50 consumers per stream: 10 groups start and
// serve; 80 leave /readyz 503 saying why, and -check-config exits 2 naming
// the limit.
func TestAccountConsumerLimit(t *testing.T) {
	t.Parallel()
	_, url := natstest.StartLimited(t, 50)
	sim := brazetest.NewServer(brazetest.Options{})
	t.Cleanup(sim.Close)
	env := func(groups int) map[string]string {
		return map[string]string{"SENDID_NATS_URL": url, "SENDID_BRAZE_URL": sim.URL, "TEST_KEY": "k", "SENDID_CONFIG": groupsConfig(t, groups)}
	}

	var out strings.Builder
	err := run(context.Background(), []string{"-check-config"}, envMap(env(80)), nil, &out)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "80 app groups") || !strings.Contains(err.Error(), "allows 50") {
		t.Fatalf("-check-config with 80 groups: exit %d, %v", exitCode(err), err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"-check-config"}, envMap(env(10)), nil, &out); err != nil || !strings.Contains(out.String(), "allows 50") {
		t.Fatalf("-check-config with 10 groups: %v %q", err, out.String())
	}

	bigEnv := env(80)
	bigEnv["SENDID_HTTP_ADDR"] = fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	var log syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envMap(bigEnv), nil, &log) }()
	big := &daemon{http: "http://" + bigEnv["SENDID_HTTP_ADDR"]}
	waitFor(t, "/readyz naming the limit", 20*time.Second, func() bool {
		code, body := big.body("/readyz")
		return code == 503 && strings.Contains(body, "80 app groups") && strings.Contains(body, "allows 50")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run with 80 groups: %v", err)
	}
	if out := log.String(); !strings.Contains(out, "app groups exceed the account's JetStream consumer limit") ||
		!strings.Contains(out, `"app_groups":80`) || !strings.Contains(out, `"consumers_allowed":50`) {
		t.Fatalf("the log does not say why:\n%s", tail(out, 3000))
	}

	small := startDaemon(t, env(10))
	waitFor(t, "ready with 10 groups", 30*time.Second, func() bool { return small.status("/readyz") == 200 })
	nc, err := natsConnect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	res := subscribe(t, nc, "test.results")
	if err := nc.Publish("sendid.jobs.g003", []byte(`{"campaign_id":"c","send_id":"s","id":"lim-1","reply_to":"test.results"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job answered", 20*time.Second, func() bool { return res.finals() == 1 })
	res.mu.Lock()
	defer res.mu.Unlock()
	if r := res.by["lim-1"]; r[len(r)-1].Status != "created" {
		t.Fatalf("result %+v", r)
	}
}

func natsConnect(url string) (*nats.Conn, error) { return nats.Connect(url) }
