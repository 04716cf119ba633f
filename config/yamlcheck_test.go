package config

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestYAMLProblemsInOwnWords: each mistake is named by its key and line in
// the configuration's terms, all of them at once, and the rest of the file
// still applies.
func TestYAMLProblemsInOwnWords(t *testing.T) {
	t.Parallel()
	in := `nats:
  url: nats://a:4222
  reconnect_wait: 30
  reconnect_wait: 2s
braze: &b
  timeout: [1, 2]
  max_attempts: 1.5
quota: {period: soon}
http_addr: {host: x}
reply_subjects: app.results.>
log: {level: debug, colour: true}
streams:
  results: "yes please"
  replicas: 3
app_groups:
  eu:
    daily_cap: 99999999999999999999
    timezone: [Europe/Berlin]
  us: 7
`
	c, err := Parse([]byte(in), func(string) string { return "" })
	want := []string{
		`nats.reconnect_wait: want a duration like "2s", got 30 (line 3)`,
		`nats.reconnect_wait: given twice (first at line 3) (line 4)`,
		`braze.timeout: want a duration like "2s", got a list (line 6)`,
		`braze.max_attempts: want a whole number, got 1.5 (line 7)`,
		`quota.period: want a duration like "2s" or "24h", got "soon" (line 8)`,
		`http_addr: want a string, got a mapping (line 9)`,
		`reply_subjects: want a list, got "app.results.>" (line 10)`,
		`log.colour: unknown key (line 11)`,
		`streams.results: want true or false, got "yes please" (line 13)`,
		`app_groups.eu.daily_cap: want a whole number, got 99999999999999999999 (line 17)`,
		`app_groups.eu.timezone: want a string, got a list (line 18)`,
		`app_groups.us: want a mapping of keys, got 7 (line 19)`,
	}
	got := Problems(err)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// What did decode is kept, so validation can report the rest in the same pass.
	if c == nil || c.Streams.Replicas != 3 || c.Log.Level != "debug" {
		t.Errorf("decoded part: %+v", c)
	}
}

func TestYAMLCheckAcceptsValid(t *testing.T) {
	t.Parallel()
	in := `defaults: &d {daily_cap: 5, burst: 2}
`
	// An anchor at the top level is an unknown key; aliases inside are fine.
	if p := Problems(func() error { _, err := Parse([]byte(in), func(string) string { return "" }); return err }()); len(p) != 1 || !strings.HasPrefix(p[0], "defaults: unknown key") {
		t.Errorf("%v", p)
	}
	ok := `nats: {url: "nats://x:1", reconnect_wait: 500ms}
braze: {max_attempts: 0x10, timeout: 1m}
streams: {results: no, replicas: 1_0}
app_groups:
  eu: &eu {daily_cap: 5, burst: 2, timezone: UTC}
  us: *eu
reply_subjects: ["a.>", "_INBOX.>"]
dev:
`
	c, err := Parse([]byte(ok), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Braze.MaxAttempts != 16 || c.Streams.Results || *c.AppGroups["us"].DailyCap != 5 {
		t.Errorf("%+v", c)
	}
	// A type that decodes itself speaks for itself.
	type withSecret struct {
		Key Secret `yaml:"key"`
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("key: abc\n"), &doc); err != nil {
		t.Fatal(err)
	}
	if p := checkYAML(&doc, reflect.TypeFor[withSecret]()); len(p) != 1 || p[0] != "key: secrets come from env or files, never from the YAML file (line 1)" {
		t.Errorf("%v", p)
	}
}
