package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// -check-config refuses the settings that would let a job be admitted
// twice or cut a call into doubt at every shutdown, and says why.
func TestCheckConfigCallRules(t *testing.T) {
	t.Parallel()
	base := map[string]string{"SENDID_BRAZE_URL": "https://rest.iad-01.braze.com", "SENDID_BRAZE_API_KEY": "k"}
	for name, tc := range map[string]struct {
		yaml string
		env  map[string]string
		want string
	}{
		"short window":   {yaml: "streams:\n  duplicate_window: 1s\n", want: "a job redelivered after the window would be admitted twice"},
		"long timeout":   {env: map[string]string{"SENDID_SHUTDOWN_TIMEOUT": "15s"}, want: "braze.timeout (SENDID_BRAZE_TIMEOUT, 20s) must be shorter than shutdown_timeout"},
		"bad in_doubt":   {env: map[string]string{"SENDID_IN_DOUBT": "sometimes"}, want: `"sometimes" is not retry or fail`},
		"group in_doubt": {yaml: "app_groups:\n  default: {}\n  eu: {api_key_env: SENDID_BRAZE_API_KEY, in_doubt: later}\n", want: "app_groups.eu.in_doubt"},
	} {
		env := map[string]string{}
		for k, v := range base {
			env[k] = v
		}
		for k, v := range tc.env {
			env[k] = v
		}
		if tc.yaml != "" {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			env["SENDID_CONFIG"] = p
		}
		err := run(context.Background(), []string{"-check-config"}, envMap(env), nil, io.Discard)
		if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want exit 2 with %q, got %v", name, tc.want, err)
		}
	}
	var out strings.Builder
	ok := map[string]string{"SENDID_IN_DOUBT": "fail", "SENDID_SHUTDOWN_TIMEOUT": "15s", "SENDID_BRAZE_TIMEOUT": "10s"}
	for k, v := range base {
		ok[k] = v
	}
	if err := run(context.Background(), []string{"-check-config"}, envMap(ok), nil, &out); err != nil || !strings.Contains(out.String(), "configuration ok") {
		t.Fatalf("%v %q", err, out.String())
	}
}
