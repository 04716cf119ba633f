package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
)

// A NATS URL's password never appears in an error or a log line: not when
// the URL cannot be parsed (a password holding '/' or '#'), and not while
// the daemon runs with a URL that works.
func TestNATSPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pass   string
		daemon bool // the URL cannot be parsed: the daemon refuses it too
	}{{"pa/ss-Q7", true}, {"pa#ss-Q7", true}, {"p@ss/w#rd-Q7", false}} {
		pass := c.pass
		u := "nats://user:" + pass + "@127.0.0.1:1"
		runs := [][]string{{"-check-config"}}
		if c.daemon {
			runs = append(runs, nil)
		}
		for _, args := range runs {
			var out syncBuffer
			err := run(context.Background(), args, envMap(map[string]string{"SENDID_NATS_URL": u, "SENDID_BRAZE_URL": "https://rest.iad-01.braze.com",
				"SENDID_BRAZE_API_KEY": "k", "SENDID_HTTP_ADDR": "127.0.0.1:0"}), nil, &out)
			if err == nil && args == nil {
				t.Fatalf("%q: the daemon started", u)
			}
			msg := ""
			if err != nil {
				msg = err.Error()
				if exitCode(err) != 2 {
					t.Errorf("%q %v: exit %d (%v)", u, args, exitCode(err), err)
				}
			}
			for _, s := range []string{msg, out.String()} {
				if strings.Contains(s, pass) || strings.Contains(s, "user:") {
					t.Errorf("%q %v: password printed: %s", u, args, s)
				}
			}
		}
	}

	// A working URL with a password (the test server has no auth and
	// ignores it): every log line at debug level keeps it hidden.
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{})
	t.Cleanup(sim.Close)
	const pass = "s3cret-Pw-9"
	host := strings.TrimPrefix(ns.URL(), "nats://")
	u := fmt.Sprintf("nats://user:%s@%s", url.QueryEscape(pass), host)
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	env := map[string]string{"SENDID_NATS_URL": u, "SENDID_BRAZE_URL": sim.URL, "SENDID_BRAZE_API_KEY": "k",
		"SENDID_LOG_LEVEL": "debug", "SENDID_HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))}
	go func() { done <- run(ctx, nil, envMap(env), nil, &out) }()
	d := &daemon{http: "http://" + env["SENDID_HTTP_ADDR"]}
	waitFor(t, "ready", 20*time.Second, func() bool { return d.status("/readyz") == 200 })
	_, metrics := d.body("/metrics")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var check syncBuffer
	_ = run(context.Background(), []string{"-check-config"}, envMap(env), nil, &check)
	all := out.String() + metrics + check.String()
	if !strings.Contains(out.String(), "[redacted]") {
		t.Fatalf("the start-up line does not show the redacted URL:\n%s", tail(out.String(), 2000))
	}
	if strings.Contains(all, pass) {
		t.Fatalf("password printed:\n%s", tail(all, 3000))
	}
}
