package worker

import (
	"context"
	"errors"
	"time"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/quota"
)

// Sender creates send IDs. *braze.Client satisfies it.
type Sender interface {
	CreateSendID(ctx context.Context, key braze.Key, req braze.CreateSendIDRequest) (braze.CreateSendIDResponse, error)
}

var _ Sender = (*braze.Client)(nil)

type outcomeKind int

const (
	outCreated     outcomeKind = iota + 1 // record, answer created, ack
	outRejected                           // answer failed/braze_rejected, ack
	outRateLimited                        // put the job back, pause the lane until the reset
	outConfigFault                        // put the job back, pause the lane with backoff
	outRetry                              // retry after backoff, or give up after max attempts
	outInterrupted                        // shutdown cut the call: put the job back
)

func (k outcomeKind) String() string {
	return [...]string{"", "created", "rejected", "rate_limited", "config_fault", "retry", "interrupted"}[k]
}

// outcome is what one Braze call means.
type outcome struct {
	kind    outcomeKind
	sendID  string       // created: what Braze returned, else what was asked for
	err     *braze.Error // every kind but created
	obs     quota.Observation
	notSent bool // the request certainly never left: release the slot
}

// decide maps one call's answer to an outcome. It is the only place that
// interprets Braze's answers; ctxErr is the call context's error.
func decide(req braze.CreateSendIDRequest, resp braze.CreateSendIDResponse, err error, ctxErr error) outcome {
	if err == nil {
		id := resp.SendID
		if id == "" {
			// Braze documents a send_id in every success; "queued" answers
			// may lack it. Report the one asked for (empty if none).
			id = req.SendID
		}
		return outcome{kind: outCreated, sendID: id, obs: observe(resp.RateLimit, false)}
	}
	var be *braze.Error
	if !errors.As(err, &be) {
		be = &braze.Error{Class: braze.Retryable, Message: "unclassified error", Err: err}
	}
	o := outcome{err: be, obs: observe(be.RateLimit, be.Class == braze.RateLimited), notSent: be.NotSent}
	switch {
	case ctxErr != nil && be.Class == braze.Retryable:
		o.kind = outInterrupted
	case be.Class == braze.RateLimited:
		o.kind = outRateLimited
	case be.Class == braze.ConfigFault:
		o.kind = outConfigFault
	case be.Class == braze.Rejected:
		o.kind = outRejected
	default:
		o.kind = outRetry
	}
	return o
}

func observe(rl braze.RateLimit, limited bool) quota.Observation {
	return quota.Observation{Known: rl.Known, Limit: rl.Limit, Remaining: rl.Remaining, Reset: rl.Reset, RateLimited: limited}
}

// backoff is the capped, jittered exponential delay before retry n (1-based):
// base·2^(n-1), capped at max, then drawn from [d/2, d).
func backoff(n int, base, max time.Duration, rnd func(int64) int64) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	half := int64(d / 2)
	if half <= 0 {
		return d
	}
	return time.Duration(half + rnd(half))
}
