package braze_test

import (
	"net/http"
	"testing"

	"github.com/sendid/sendid/braze"
)

// FuzzParseRateLimit: any header values parse without panicking into sane
// numbers.
func FuzzParseRateLimit(f *testing.F) {
	f.Add("100", "7", "1764288000", false)
	f.Add("x", "-1", "1e300", true)
	f.Add("", "", "", false)
	f.Add("999999999999999999999", "0", "0.5", true)
	f.Fuzz(func(t *testing.T, limit, remaining, reset string, lower bool) {
		h := http.Header{}
		names := [3]string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
		if lower {
			names = [3]string{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
		}
		h[names[0]], h[names[1]], h[names[2]] = []string{limit}, []string{remaining}, []string{reset}
		rl := braze.ParseRateLimit(h)
		if rl.Limit < 0 || rl.Remaining < 0 {
			t.Fatalf("negative values: %+v", rl)
		}
		if !rl.Reset.IsZero() && rl.Reset.Year() > 33658 {
			t.Fatalf("absurd reset %v", rl.Reset)
		}
	})
}
