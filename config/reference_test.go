package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from the Config struct")

const referencePath = "../docs/configuration.md"

// TestConfigurationReference keeps docs/configuration.md equal to what the
// Config struct and KeyDocs say; -update rewrites it.
func TestConfigurationReference(t *testing.T) {
	got, err := Reference()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(referencePath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(referencePath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(referencePath)
	if err != nil {
		t.Fatalf("%v (go test ./config -run TestConfigurationReference -update writes it)", err)
	}
	if string(want) != got {
		t.Fatalf("docs/configuration.md is stale: go test ./config -run TestConfigurationReference -update rewrites it")
	}
	for _, name := range EnvNames {
		if !strings.Contains(got, name) {
			t.Errorf("%s is not in the reference", name)
		}
	}
}

// TestReferenceNamesUndocumentedKeys: a key added without documentation,
// and documentation of a key that is gone, fail with the key's name.
func TestReferenceNamesUndocumentedKeys(t *testing.T) {
	type group struct {
		Cap   int    `yaml:"cap"`
		Extra string `yaml:"extra"`
	}
	type cfg struct {
		Wait   time.Duration    `yaml:"wait"`
		Groups map[string]group `yaml:"groups"`
		Hidden string           `yaml:"-"`
	}
	docs := map[string]KeyDoc{"wait": {Doc: "w"}, "groups": {Doc: "g"}, "groups.<name>.cap": {Doc: "c"}, "gone": {Doc: "x"}}
	_, err := referenceRows(reflect.TypeFor[cfg](), reflect.ValueOf(cfg{Wait: 90 * time.Second}), docs)
	if err == nil || !strings.Contains(err.Error(), "without documentation in config.KeyDocs: groups.<name>.extra") ||
		!strings.Contains(err.Error(), "does not have: gone") {
		t.Fatalf("err %v", err)
	}
	docs["groups.<name>.extra"] = KeyDoc{Doc: "e", Default: "`x`"}
	delete(docs, "gone")
	rows, err := referenceRows(reflect.TypeFor[cfg](), reflect.ValueOf(cfg{Wait: 90 * time.Second}), docs)
	if err != nil {
		t.Fatal(err)
	}
	want := []refRow{
		{key: "wait", typ: "duration", def: "`1m30s`", doc: "w"},
		{key: "groups", typ: "mapping of names to sections", def: "—", doc: "g"},
		{key: "groups.<name>.cap", typ: "integer", def: "—", doc: "c"},
		{key: "groups.<name>.extra", typ: "string", def: "`x`", doc: "e"},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows\n got %+v\nwant %+v", rows, want)
	}
	for d, want := range map[time.Duration]string{24 * time.Hour: "24h", time.Minute: "1m", 500 * time.Millisecond: "500ms", 90 * time.Minute: "1h30m", 2 * time.Second: "2s"} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%v) = %s, want %s", d, got, want)
		}
	}
}
