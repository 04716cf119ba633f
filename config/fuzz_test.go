package config_test

import (
	"errors"
	"testing"

	"github.com/sendid/sendid/config"
)

// FuzzParse: any YAML yields a config or a *config.Error, and Validate never
// panics on what parsed.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"nats: {url: nats://x:4222}\napp_groups:\n  eu: {daily_cap: 5, burst: 1, timezone: Europe/Berlin}\n",
		"quota: {period: 10s}\nstreams: {replicas: 3}\n", "app_groups: {Bad: {}}", "nats: [1,2]", "a: &a [*a]", "{", "",
		"app_groups:\n  x:\n    api_key: secret\n", "reply_subjects: ['a.>', '*']\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, func(string) string { return "" })
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not *config.Error", err)
			}
			return
		}
		if err := c.Validate(false); err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("validate error %T", err)
			}
			return
		}
		_ = c.Groups()
	})
}
