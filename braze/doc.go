// Package braze is the typed client for Braze's POST /sends/id/create.
//
// It owns the wire format, the identifier rules shared by admission and the
// simulator, the parsing of X-RateLimit-* headers, and the one classification
// of every outcome into an *Error with a Class. Callers never look at HTTP
// status codes. API keys are passed per call as a Key, which never prints.
package braze
