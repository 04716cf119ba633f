package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PendingResult is a result on its way (Publisher.ResultAsync).
type PendingResult struct {
	p       *Publisher
	r       Result
	subject string
	ack     jetstream.PubAckFuture // nil: a core publish, done once sent
}

// ResultAsync is Result without waiting for the results stream's ack: the
// caller may publish many and then Wait for each, in order. The
// publications in flight are bounded by the JetStream context's
// PublishAsyncMaxPending (a full window makes ResultAsync wait, then fail).
func (p *Publisher) ResultAsync(subject string, r Result) (*PendingResult, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{HeaderMsgID: []string{ResultMsgID(r)}}}
	pr := &PendingResult{p: p, r: r, subject: subject}
	if p.durable && strings.HasPrefix(subject, p.subjects.Prefix+".results.") {
		if pr.ack, err = p.js.PublishMsgAsync(msg); err != nil {
			return nil, fmt.Errorf("publish result to %s: %w", subject, err)
		}
		return pr, nil
	}
	if err := p.nc.PublishMsg(msg); err != nil {
		return nil, fmt.Errorf("publish result to %s: %w", subject, err)
	}
	return pr, nil
}

// Wait waits until the result is stored (a core publish: sent), then shows
// it to the OnResult observer.
func (pr *PendingResult) Wait(ctx context.Context) error {
	if pr.ack != nil {
		select {
		case <-pr.ack.Ok():
		case err := <-pr.ack.Err():
			return fmt.Errorf("publish result to %s: %w", pr.subject, err)
		case <-ctx.Done():
			return fmt.Errorf("publish result to %s: %w", pr.subject, ctx.Err())
		}
	}
	if pr.p.observe != nil {
		pr.p.observe(pr.r)
	}
	return nil
}
