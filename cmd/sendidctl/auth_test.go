package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// authServer runs a NATS server (no JetStream) that wants opts' credentials.
func authServer(t *testing.T, opts server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	ns, err := server.NewServer(&opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.ClientURL()
}

// TestContextCredentials: a nats context's user/password or token reach
// the server, and a refusal is said in words.
func TestContextCredentials(t *testing.T) {
	t.Parallel()
	withUser := authServer(t, server.Options{Username: "ops", Password: "s3cret-pw"})
	withToken := authServer(t, server.Options{Authorization: "t0ken-value"})
	home := t.TempDir()
	dir := filepath.Join(home, "nats", "context")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctxFile := func(name, url, extra string) {
		writeFile(t, filepath.Join(dir, name+".json"), fmt.Sprintf(`{"url":%q%s}`, url, extra))
	}
	ctxFile("user", withUser, `,"user":"ops","password":"s3cret-pw"`)
	ctxFile("wrong", withUser, `,"user":"ops","password":"nope-pw"`)
	ctxFile("token", withToken, `,"token":"t0ken-value"`)
	vars := map[string]string{"XDG_CONFIG_HOME": home}
	for name, want := range map[string]string{
		// Connected: nothing serves the worker's subjects on these servers.
		"user":  "no sendid worker answered on sendid.ctl.quota",
		"token": "no sendid worker answered on sendid.ctl.quota",
		"wrong": "refused the credentials (from nats context wrong)",
	} {
		code, out, errOut := ctlEnv(t, vars, "--context", name, "quota", "--timeout", "2s")
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("context %s: exit %d, %q%q; want %q", name, code, out, errOut, want)
		}
		if strings.Contains(errOut, "s3cret-pw") || strings.Contains(errOut, "nope-pw") || strings.Contains(errOut, "t0ken-value") {
			t.Errorf("context %s: a secret in the error: %s", name, errOut)
		}
	}
}
