package braze

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RateLimit is what Braze's X-RateLimit-* headers said about the workspace's
// quota. Known is false when the response carried no usable headers.
type RateLimit struct {
	Known     bool
	Limit     int
	Remaining int
	Reset     time.Time // zero when the header was absent
}

// ParseRateLimit reads X-RateLimit-Limit, -Remaining and -Reset (epoch
// seconds) from h, matching names in any case: HTTP/2 delivers them in lower
// case and a hand-built header map need not be canonical. Limit and Remaining
// must both parse for the result to be Known.
func ParseRateLimit(h http.Header) RateLimit {
	var rl RateLimit
	var haveLimit, haveRemaining bool
	for name, vals := range h {
		if len(vals) == 0 || len(name) < len("x-ratelimit-") || !strings.EqualFold(name[:len("x-ratelimit-")], "x-ratelimit-") {
			continue
		}
		v := strings.TrimSpace(vals[0])
		switch suffix := strings.ToLower(name[len("x-ratelimit-"):]); suffix {
		case "limit":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				rl.Limit, haveLimit = n, true
			}
		case "remaining":
			if n, err := strconv.Atoi(v); err == nil {
				rl.Remaining, haveRemaining = max(n, 0), true
			}
		case "reset":
			if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 && f < 1e12 {
				rl.Reset = time.Unix(int64(f), 0).UTC()
			}
		}
	}
	rl.Known = haveLimit && haveRemaining
	return rl
}
