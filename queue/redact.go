package queue

import (
	"strings"
)

// RedactURL hides the user info of every URL in a comma-separated list
// (nats://user:pass@host → nats://[redacted]@host). It does not parse: a
// password may hold '/', '#', ',', '?' or '@' that make a URL parser give up
// or cut it short, and it must not be printed even then. Everything between
// a scheme's "://" (or the start of a list item without one) and the last
// '@' before the next "://" is user info.
func RedactURL(u string) string {
	var b strings.Builder
	for _, s := range userInfoSpans(u) {
		b.WriteString(u[s.from:s.infoStart])
		if s.infoEnd > s.infoStart {
			b.WriteString("[redacted]")
		}
		b.WriteString(u[s.infoEnd:s.to])
	}
	return b.String()
}

// span is one URL of a list: [from, to) with user info [infoStart, infoEnd).
type span struct{ from, infoStart, infoEnd, to int }

// userInfoSpans splits a URL list at each "://" (a URL starts with its
// scheme, after the previous URL's last '@' or ','), and finds each URL's
// user info: up to its last '@'.
func userInfoSpans(u string) []span {
	var starts []int // index of each URL's first byte
	for i := 0; i < len(u); {
		j := strings.Index(u[i:], "://")
		if j < 0 {
			break
		}
		k := i + j // scheme ends at k; it starts after the last ',' before k
		from := strings.LastIndexByte(u[:k], ',') + 1
		if !isScheme(u[from:k]) || len(starts) > 0 && from <= starts[len(starts)-1] {
			// No separator between two schemes: "://" inside a password.
			from = -1
		}
		if from >= 0 {
			starts = append(starts, from)
		}
		i = k + 3
	}
	if len(starts) == 0 || starts[0] != 0 {
		starts = append([]int{0}, starts...)
	}
	var out []span
	for n, from := range starts {
		to := len(u)
		if n+1 < len(starts) {
			to = starts[n+1]
		}
		infoStart := from
		if j := strings.Index(u[from:to], "://"); j >= 0 && isScheme(u[from:from+j]) {
			infoStart = from + j + 3
		}
		infoEnd := infoStart
		if at := strings.LastIndexByte(u[infoStart:to], '@'); at >= 0 {
			infoEnd = infoStart + at
		}
		out = append(out, span{from, infoStart, infoEnd, to})
	}
	return out
}

// isScheme reports whether s is a URL scheme ([a-zA-Z][a-zA-Z0-9+.-]*).
func isScheme(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '.' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// secretsOf lists the user infos (and their password parts) of a URL list.
func secretsOf(u string) []string {
	var out []string
	for _, s := range userInfoSpans(u) {
		if s.infoEnd <= s.infoStart {
			continue
		}
		info := u[s.infoStart:s.infoEnd]
		out = append(out, info)
		if _, pass, ok := strings.Cut(info, ":"); ok && pass != "" {
			out = append(out, pass)
		}
	}
	return out
}

// scrubbedError is an error whose text had a URL's credentials removed; it
// still unwraps to the original for errors.Is and errors.As.
type scrubbedError struct {
	err  error
	text string
}

func (e *scrubbedError) Error() string { return e.text }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub removes u's user infos and passwords from err's text: a client
// library may quote the URL it could not parse.
func scrub(err error, u string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	changed := false
	for _, s := range secretsOf(u) {
		if strings.Contains(text, s) {
			text, changed = strings.ReplaceAll(text, s, "[redacted]"), true
		}
	}
	if !changed {
		return err
	}
	return &scrubbedError{err: err, text: text}
}
