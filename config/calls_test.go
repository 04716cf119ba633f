package config_test

import (
	"strings"
	"testing"

	"github.com/sendid/sendid/config"
)

func TestInDoubtSetting(t *testing.T) {
	t.Parallel()
	yaml := `
braze:
  url: https://rest.iad-01.braze.com
app_groups:
  default: {}
  eu:
    in_doubt: fail
  us: {}
`
	c, err := config.Parse([]byte(yaml), env(map[string]string{"SENDID_IN_DOUBT": "fail"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(false); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, g := range c.Groups() {
		got[g.Name] = g.InDoubt
	}
	if got["default"] != config.InDoubtFail || got["eu"] != config.InDoubtFail || got["us"] != config.InDoubtRetry {
		t.Fatalf("in_doubt per group: %v", got)
	}

	c, err = config.Parse([]byte("app_groups:\n  eu:\n    in_doubt: maybe\n"), env(map[string]string{"SENDID_IN_DOUBT": "never"}))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate(true)
	for _, want := range []string{`app_groups.eu.in_doubt: "maybe" is not retry or fail`, `app_groups.default.in_doubt (SENDID_IN_DOUBT): "never" is not retry or fail`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

func TestCheckConfigCallTimings(t *testing.T) {
	t.Parallel()
	c, err := config.Parse(nil, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(true); err != nil {
		t.Fatalf("defaults must pass: %v", err)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"streams:\n  duplicate_window: 1s\n", "streams.duplicate_window: 1s is shorter than the consumers' AckWait"},
		{"braze:\n  timeout: 25s\n", "braze.timeout (SENDID_BRAZE_TIMEOUT, 25s) must be shorter than shutdown_timeout (SENDID_SHUTDOWN_TIMEOUT, 25s): a call still running"},
		{"braze:\n  timeout: 40s\nshutdown_timeout: 30s\n", "a cut call is in doubt"},
	} {
		c, err := config.Parse([]byte(tc.yaml), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(true); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want %q, got %v", tc.yaml, tc.want, err)
		}
	}
	c, err = config.Parse([]byte("streams:\n  duplicate_window: 30s\nbraze:\n  timeout: 24s\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(true); err != nil {
		t.Errorf("window of 30s and timeout under the shutdown bound must pass: %v", err)
	}
}

func TestBrazeTimeoutFromEnv(t *testing.T) {
	t.Parallel()
	c, err := config.Parse(nil, env(map[string]string{"SENDID_SHUTDOWN_TIMEOUT": "5s", "SENDID_BRAZE_TIMEOUT": "4s"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(true); err != nil || c.Braze.Timeout.String() != "4s" {
		t.Fatalf("timeout %s: %v", c.Braze.Timeout, err)
	}
	if _, err := config.Parse(nil, env(map[string]string{"SENDID_BRAZE_TIMEOUT": "soon"})); err == nil || !strings.Contains(err.Error(), "SENDID_BRAZE_TIMEOUT") {
		t.Fatalf("bad duration not named: %v", err)
	}
}
