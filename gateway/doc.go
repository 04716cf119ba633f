// Package gateway owns sendid's Braze-compatible HTTP front door. Braze's
// own request, POST /sends/id/create with a Bearer token and a JSON body,
// becomes a job published to <prefix>.jobs.<group> with reply_to on the
// gateway's inbox; the job's result or notice is answered in Braze's shapes
// (201 success, 202 queued with an ETA, Braze's error bodies), and
// GET /jobs/<id> reads a job's answer later.
//
// The gateway is one more producer of the NATS contract: validation,
// deduplication, deferral, calls in doubt and expiry stay the worker's
// decisions. The gateway decides only which app group a token names (in
// constant time, against each group's Braze API key and gateway tokens), how
// long a request waits, and how a result reads over HTTP (answer.go, in one
// place). It bounds what callers control: body size, header and body read
// times, and the number of requests waiting at once.
package gateway
