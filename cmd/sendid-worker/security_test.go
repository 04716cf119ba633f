package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
)

// -check-config warns about a world-readable key file (and still passes);
// the daemon warns at start about group- and world-readable credential
// files; a short admin token is a configuration error (exit 2).
func TestCredentialFilePermissions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte("sk-perm-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SENDID_BRAZE_URL": "https://rest.iad-01.braze.com", "SENDID_BRAZE_API_KEY_FILE": keyFile}
	var out strings.Builder
	if err := run(context.Background(), []string{"-check-config"}, envMap(env), nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "warning: app_groups.default.api_key_file: "+keyFile+" is readable by every user") ||
		!strings.Contains(out.String(), "configuration ok") {
		t.Fatalf("-check-config output:\n%s", out.String())
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"-check-config"}, envMap(env), nil, &out); err != nil || strings.Contains(out.String(), "warning") {
		t.Fatalf("0600 key file: %v\n%s", err, out.String())
	}
	env["SENDID_ADMIN_TOKEN"] = "short"
	if err := run(context.Background(), []string{"-check-config"}, envMap(env), nil, &out); err == nil || exitCode(err) != 2 {
		t.Fatalf("short admin token: %v", err)
	}

	// At start: a group-readable key file is logged.
	if err := os.Chmod(keyFile, 0o640); err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{})
	t.Cleanup(sim.Close)
	const adminToken = "admin-0123456789-abcdef"
	denv := map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_BRAZE_URL": sim.URL, "SENDID_BRAZE_API_KEY_FILE": keyFile,
		"SENDID_HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t)), "SENDID_ADMIN_TOKEN": adminToken, "SENDID_LOG_LEVEL": "debug"}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envMap(denv), nil, &logs) }()
	d := &daemon{http: "http://" + denv["SENDID_HTTP_ADDR"]}
	waitFor(t, "ready", 20*time.Second, func() bool { return d.status("/readyz") == 200 })
	req, _ := http.NewRequest(http.MethodPut, d.http+"/loglevel", strings.NewReader(`{"level":"info"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT /loglevel with the token: %v %v", resp, err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "credential file is readable by other users") || !strings.Contains(logs.String(), `"mode":"0640"`) {
		t.Fatalf("no start-up warning:\n%s", tail(logs.String(), 2000))
	}
	if !strings.Contains(logs.String(), "log level changed") || strings.Contains(logs.String(), adminToken) || strings.Contains(logs.String(), adminToken[6:]) {
		t.Fatalf("level change not logged, or the admin token printed:\n%s", tail(logs.String(), 2000))
	}
}
