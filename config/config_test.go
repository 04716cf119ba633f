package config_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/config"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsEnvAndFile(t *testing.T) {
	t.Parallel()
	yaml := `
nats:
  url: nats://file:4222
braze:
  url: https://rest.iad-01.braze.com
app_groups:
  default:
    daily_cap: 50
  eu:
    braze_url: https://rest.fra-01.braze.eu
    api_key_file: /run/secrets/eu
    daily_cap: 250
    timezone: Europe/Berlin
`
	c, err := config.Parse([]byte(yaml), env(map[string]string{
		"SENDID_NATS_URL": "nats://env:4222", "SENDID_DAILY_CAP": "70", "SENDID_QUOTA_PERIOD": "10s", "SENDID_BRAZE_API_KEY": "k",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(false); err != nil {
		t.Fatal(err)
	}
	if c.NATS.URL != "nats://env:4222" || c.Quota.Period != 10*time.Second || c.HTTPAddr != ":8080" || c.MaxJobBytes != 64<<10 || c.Shutdown != 25*time.Second {
		t.Fatalf("%+v", c)
	}
	gs := c.Groups()
	if len(gs) != 2 || gs[0].Name != "default" || gs[0].Cap != 70 || gs[0].Burst != 10 || gs[0].APIKeyEnv != "SENDID_BRAZE_API_KEY" ||
		gs[1].Name != "eu" || gs[1].Cap != 250 || gs[1].Location.String() != "Europe/Berlin" || gs[1].BrazeURL != "https://rest.fra-01.braze.eu" {
		t.Fatalf("groups %+v", gs)
	}
}

func TestStrictDecoding(t *testing.T) {
	t.Parallel()
	_, err := config.Parse([]byte("nats:\n  urll: x\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "urll") {
		t.Fatalf("unknown key not named: %v", err)
	}
	_, err = config.Parse([]byte("app_groups:\n  eu:\n    api_key: secret\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "api_key") {
		t.Fatalf("inline key accepted: %v", err)
	}
}

func TestValidateNamesEveryKey(t *testing.T) {
	t.Parallel()
	yaml := `
log: {level: loud, format: xml}
quota: {period: 500ms}
streams: {replicas: 9}
reply_subjects: ["a..b"]
app_groups:
  Bad.Name: {}
  eu: {daily_cap: 0, burst: -1, timezone: Mars/Olympus}
`
	c, err := config.Parse([]byte(yaml), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate(false)
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"log.level", "log.format", "quota.period", "streams.replicas", "reply_subjects[0]",
		"app_groups.Bad.Name", "app_groups.eu.daily_cap", "app_groups.eu.burst", "app_groups.eu.timezone", "no Braze URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// -dev needs no Braze URL.
	c2, _ := config.Parse(nil, env(nil))
	if err := c2.Validate(true); err != nil {
		t.Fatalf("dev: %v", err)
	}
	if err := c2.Validate(false); err == nil || !strings.Contains(err.Error(), "SENDID_BRAZE_URL") {
		t.Fatalf("non-dev: %v", err)
	}
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	_, err := config.Parse(nil, env(map[string]string{"SENDID_DAILY_CAP": "lots", "SENDID_QUOTA_PERIOD": "daily"}))
	if err == nil || !strings.Contains(err.Error(), "SENDID_DAILY_CAP") || !strings.Contains(err.Error(), "SENDID_QUOTA_PERIOD") {
		t.Fatalf("%v", err)
	}
}

func TestKeysAndSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "eu")
	if err := os.WriteFile(keyFile, []byte("eu-secret-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte("app_groups:\n  eu:\n    api_key_file: "+keyFile+"\n  us:\n    api_key_env: US_KEY\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := c.LoadKeys(env(map[string]string{"US_KEY": "us-secret-key"}), false)
	if err != nil {
		t.Fatal(err)
	}
	if keys["eu"].Reveal() != "eu-secret-key" || keys["us"].Reveal() != "us-secret-key" {
		t.Fatal("keys not loaded")
	}
	for _, k := range keys {
		js, _ := json.Marshal(map[string]any{"k": k})
		for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %q %x", k, k, k, k, k, k), string(js)} {
			if strings.Contains(s, "secret") || strings.Contains(s, fmt.Sprintf("%x", k.Reveal())) {
				t.Fatalf("secret printed: %s", s)
			}
		}
	}
	_, err = c.LoadKeys(env(nil), false)
	if err == nil || !strings.Contains(err.Error(), "$US_KEY") {
		t.Fatalf("missing key not named: %v", err)
	}
}
