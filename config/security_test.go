package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sendid/sendid/config"
)

func TestSecuritySettings(t *testing.T) {
	t.Parallel()
	yaml := `
reply_subjects: ["app.>"]
app_groups:
  default:
    max_backlog: 100
  eu:
    reply_subjects: ["eu.results.>", "_INBOX.>"]
`
	c, err := config.Parse([]byte(yaml), env(map[string]string{"SENDID_BRAZE_URL": "https://rest.iad-01.braze.com"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(false); err != nil {
		t.Fatal(err)
	}
	if c.Streams.MaxBytes != config.DefaultStreamMaxBytes || c.Streams.ResultsMaxBytes != config.DefaultResultsMaxBytes || !c.HTTPAdmin.AllowLoopback {
		t.Fatalf("defaults: %+v %+v", c.Streams, c.HTTPAdmin)
	}
	gs := c.Groups()
	if gs[0].MaxBacklog != 100 || strings.Join(gs[0].ReplySubjects, ",") != "app.>" ||
		gs[1].MaxBacklog != 0 || strings.Join(gs[1].ReplySubjects, ",") != "eu.results.>,_INBOX.>" {
		t.Fatalf("groups %+v", gs)
	}

	bad := `
streams: {max_bytes: 1000, results_max_bytes: 0}
app_groups:
  default:
    max_backlog: -1
    reply_subjects: ["a..b"]
`
	c, err = config.Parse([]byte(bad), env(map[string]string{"SENDID_BRAZE_URL": "https://rest.iad-01.braze.com"}))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate(false)
	for _, key := range []string{"streams.max_bytes", "streams.results_max_bytes", "app_groups.default.max_backlog", "app_groups.default.reply_subjects[0]"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s not named: %v", key, err)
		}
	}
}

func TestFilePermissionWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	private, group, world := write("private", 0o600), write("group", 0o640), write("world", 0o644)
	creds, nkey := write("creds", 0o604), write("nkey", 0o400)
	yaml := "nats: {creds_file: " + creds + "}\napp_groups:\n  default: {api_key_file: " + private + "}\n  eu: {api_key_file: " + group + "}\n  us: {api_key_file: " + world + "}\n"
	c, err := config.Parse([]byte(yaml), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	c.NATS.NKeyFile = nkey // alternatives in a real config; both are files to check here
	got := map[string]bool{}
	for _, w := range c.FilePermissionWarnings(env(nil)) {
		got[w.Setting] = w.WorldReadable
		if !strings.Contains(w.String(), w.Path) || !strings.Contains(w.String(), "chmod") {
			t.Errorf("warning text: %s", w)
		}
	}
	want := map[string]bool{"app_groups.eu.api_key_file": false, "app_groups.us.api_key_file": true, "nats.creds_file": true}
	if len(got) != len(want) {
		t.Fatalf("warnings %v, want %v", got, want)
	}
	for k, v := range want {
		if w, ok := got[k]; !ok || w != v {
			t.Errorf("%s: got %v/%v, want world-readable=%v", k, w, ok, v)
		}
	}
}
