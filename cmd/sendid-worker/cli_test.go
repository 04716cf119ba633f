package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/internal/natstest"
)

func TestHelpAndVersionFlags(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := run(context.Background(), []string{"-h"}, envMap(nil), nil, &out); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"usage: sendid-worker", "-check-config", "-version", "-dev-dir"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"-version"}, envMap(nil), nil, &out); err != nil || !strings.HasPrefix(out.String(), "sendid-worker ") || !strings.Contains(out.String(), "go1.") {
		t.Errorf("-version: %v %q", err, out.String())
	}
	err := run(context.Background(), []string{"-nope"}, envMap(nil), nil, io.Discard)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "sendid-worker -h lists the flags") {
		t.Errorf("bad flag: %v", err)
	}
}

// TestCheckConfigOnePass: one run reports YAML mistakes in the
// configuration's words, validation problems, missing referenced files and a
// missing API key together.
func TestCheckConfigOnePass(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sendid.yaml")
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`nats:
  reconnect_wait: 30
  creds_file: %s/missing.creds
  tls: {ca_file: %s, cert_file: %s/cert.pem, key_file: %s/key.pem}
braze:
  url: https://rest.iad-01.braze.com
  max_attempts: many
  timout: 3s
streams:
  results: maybe
app_groups:
  eu:
    daily_cap: 2.5
    api_key_env: EU_KEY
  us:
    daily_cap: 0
    api_key_file: %s/us.key
`, dir, notPEM, dir, dir, dir)
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err := run(context.Background(), []string{"-check-config", "-config", path}, envMap(nil), nil, &out)
	var ce *config.Error
	if !errors.As(err, &ce) || exitCode(err) != 2 {
		t.Fatalf("want a config error, got %v (%q)", err, out.String())
	}
	msg := err.Error()
	for _, want := range []string{
		`nats.reconnect_wait: want a duration like "2s", got 30 (line 2)`,
		`braze.max_attempts: want a whole number, got "many" (line 7)`,
		`braze.timout: unknown key (did you mean timeout?) (line 8)`,
		`streams.results: want true or false, got "maybe" (line 10)`,
		`app_groups.eu.daily_cap: want a whole number, got 2.5 (line 13)`,
		`app_groups.us.daily_cap: 0 is outside 1..100000000`,
		"nats.creds_file: open " + dir + "/missing.creds: no such file or directory",
		"nats.tls.ca_file: " + notPEM + " holds no PEM certificate",
		"nats.tls.cert_file: open " + dir + "/cert.pem",
		"nats.tls.key_file: open " + dir + "/key.pem",
		"app_groups.eu: no API key (set $EU_KEY)",
		"app_groups.us.api_key_file: open " + dir + "/us.key",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "unmarshal") || strings.Contains(msg, "time.Duration") || strings.Contains(msg, "!!") {
		t.Errorf("Go or YAML internals in the message:\n%s", msg)
	}

	// Files that exist and are readable pass.
	creds := filepath.Join(dir, "ok.creds")
	if err := os.WriteFile(creds, []byte("-----BEGIN NATS USER JWT-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, fmt.Appendf(nil, "nats: {creds_file: %s}\nbraze: {url: https://rest.iad-01.braze.com}\n", creds), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"-check-config", "-config", path}, envMap(map[string]string{"SENDID_BRAZE_API_KEY": "k"}), nil, &out); err != nil {
		t.Errorf("readable creds: %v", err)
	}
}

func TestDevHTTPOnLoopback(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"-dev"}, nil, "127.0.0.1:8080"},
		{nil, nil, ":8080"},
		{[]string{"-dev"}, map[string]string{"SENDID_HTTP_ADDR": ":9999"}, ":9999"},
		{[]string{"-dev", "-http-addr", "0.0.0.0:9998"}, nil, "0.0.0.0:9998"},
	}
	for _, tc := range cases {
		f, err := parseFlags(append(tc.args, "-check-config"), envMap(tc.env))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := loadConfig(f, envMap(tc.env))
		if err != nil && !f.dev {
			continue // no Braze URL outside -dev: not what this checks
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.HTTPAddr != tc.want {
			t.Errorf("%v %v: http_addr %q, want %q", tc.args, tc.env, cfg.HTTPAddr, tc.want)
		}
	}
	for addr, want := range map[string]string{":8080": "http://127.0.0.1:8080", "0.0.0.0:1": "http://127.0.0.1:1", "[::]:2": "http://127.0.0.1:2",
		"127.0.0.1:3": "http://127.0.0.1:3", "example.com:4": "http://example.com:4"} {
		if got := httpURL(addr); got != want {
			t.Errorf("httpURL(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestDevBusyPortAtOnce: -dev reports a taken NATS port without waiting for
// an embedded server that cannot start.
func TestDevBusyPortAtOnce(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := map[string]string{"SENDID_NATS_URL": "nats://" + ln.Addr().String(), "SENDID_HTTP_ADDR": "127.0.0.1:0"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = run(ctx, []string{"-dev", "-dev-dir", t.TempDir()}, envMap(env), nil, io.Discard)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()+" is in use") {
		t.Fatalf("busy port: %v", err)
	}
}

// TestLogsOfARun: the start line has the versions, level changes and the
// shutdown's cause are logged, durations are strings, and a clean shutdown
// logs no warning.
func TestLogsOfARun(t *testing.T) {
	t.Parallel()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	env := map[string]string{"SENDID_NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t)), "SENDID_HTTP_ADDR": httpAddr,
		"SENDID_LOG_FORMAT": "json"}
	var out syncBuffer
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-dev", "-dev-dir", t.TempDir()}, envMap(env), nil, &out) }()
	waitFor(t, "ready", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	for _, body := range []struct{ ctype, data string }{{"application/x-www-form-urlencoded", "level=debug"}, {"application/json", `{"level":"info"}`}} {
		req, _ := http.NewRequest(http.MethodPut, "http://"+httpAddr+"/loglevel", strings.NewReader(body.data))
		req.Header.Set("Content-Type", body.ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("PUT /loglevel %s: %v %v", body.data, err, resp)
		}
		resp.Body.Close()
	}
	cancel(errors.New("terminated signal received"))
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no shutdown")
	}
	logs := out.String()
	for _, want := range []string{
		`"msg":"sendid-worker started","version":"`, `"go":"go1.`,
		`"msg":"log level changed","from":"info","to":"debug"`, `"msg":"log level changed","from":"debug","to":"info"`,
		`"msg":"shutting down: finishing the job in flight","cause":"terminated signal received","shutdown_timeout":"25s"`,
		`"msg":"sendid-worker stopped"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	if strings.Contains(logs, `"level":"warn"`) || strings.Contains(logs, `"level":"error"`) {
		t.Errorf("a clean run logged a warning or an error")
	}
	if t.Failed() {
		t.Logf("logs:\n%s", tail(logs, 6000))
	}
}
