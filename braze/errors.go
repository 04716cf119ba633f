package braze

import (
	"fmt"
	"strings"
	"time"
)

// Class is what an unsuccessful call means for the caller.
type Class int

const (
	// Retryable: 5xx, timeouts, connection errors, an unreadable 2xx. Retry
	// with backoff.
	Retryable Class = iota + 1
	// RateLimited: 429. Wait until the reset; never busy-retry.
	RateLimited
	// ConfigFault: 401, 403, 404 (or a redirect loop). The job is fine; the
	// key, permission or URL is not.
	ConfigFault
	// Rejected: any other 4xx. Braze refused this request; retrying is futile.
	Rejected
)

func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case RateLimited:
		return "rate_limited"
	case ConfigFault:
		return "config_fault"
	case Rejected:
		return "rejected"
	}
	return "unknown"
}

// Error is every unsuccessful outcome of CreateSendID. Its text never holds
// the API key.
type Error struct {
	Class      Class
	StatusCode int      // 0 when no HTTP response arrived
	Message    string   // Braze's "message", or a description of the failure
	Details    []string // Braze's "errors", rendered as JSON text
	RateLimit  RateLimit
	// NotSent is true only when the request certainly never left the process
	// (no request headers were written), so no quota can have been spent.
	NotSent bool
	Err     error // underlying transport error, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("braze: ")
	b.WriteString(e.Class.String())
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if len(e.Details) > 0 {
		b.WriteString(" ")
		b.WriteString(strings.Join(e.Details, "; "))
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the same request may succeed later without any
// change to configuration.
func (e *Error) Retryable() bool { return e.Class == Retryable || e.Class == RateLimited }

// ResetAt is when a rate-limited caller may try again: Braze's reset, or
// fallback when Braze did not say.
func (e *Error) ResetAt(fallback time.Time) time.Time {
	if !e.RateLimit.Reset.IsZero() {
		return e.RateLimit.Reset
	}
	return fallback
}

// classify maps an HTTP status to a Class. It is the only place that does.
func classify(status int) Class {
	switch {
	case status == 429:
		return RateLimited
	case status == 401 || status == 403 || status == 404:
		return ConfigFault
	case status >= 500, status == 408:
		return Retryable
	case status >= 400:
		return Rejected
	case status >= 300:
		// Redirects are followed; one that survives is a wrong URL.
		return ConfigFault
	}
	return Retryable
}
