package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers used on sendid's messages.
const (
	HeaderMsgID   = "Nats-Msg-Id"
	HeaderReplyTo = "Reply-To"
	HeaderError   = "Sendid-Error"
)

// Publisher publishes results, admitted jobs and dead letters.
type Publisher struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	subjects Subjects
	durable  bool // results stream on: await its ack for <prefix>.results.>
	observe  func(Result)
}

// OnResult registers fn to see every result and notice once it is
// published (the operator page keeps the last ones). Call it before use.
func (p *Publisher) OnResult(fn func(Result)) { p.observe = fn }

// NewPublisher returns a publisher. resultsStream says SENDID_RESULTS exists.
func NewPublisher(nc *nats.Conn, js jetstream.JetStream, s Subjects, resultsStream bool) *Publisher {
	return &Publisher{nc: nc, js: js, subjects: s, durable: resultsStream}
}

// Result publishes r to subject with Nats-Msg-Id "<id>.<status>". Results on
// <prefix>.results.> wait for the results stream's ack; others are core
// publishes, ordered before the job's ack on the same connection.
func (p *Publisher) Result(ctx context.Context, subject string, r Result) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{HeaderMsgID: []string{r.ID + "." + r.Status}}}
	if p.durable && strings.HasPrefix(subject, p.subjects.Prefix+".results.") {
		if _, err := p.js.PublishMsg(ctx, msg); err != nil {
			return fmt.Errorf("publish result to %s: %w", subject, err)
		}
	} else if err := p.nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("publish result to %s: %w", subject, err)
	}
	if p.observe != nil {
		p.observe(r)
	}
	return nil
}

// Ready appends an admitted job to its group's FIFO. msgID de-duplicates a
// re-admission of the same message after a crash.
func (p *Publisher) Ready(ctx context.Context, group string, job Job, msgID string) (*jetstream.PubAck, error) {
	data, err := json.Marshal(job)
	if err != nil {
		return nil, fmt.Errorf("encode job: %w", err)
	}
	ack, err := p.js.PublishMsg(ctx, &nats.Msg{Subject: p.subjects.Ready(group), Data: data, Header: nats.Header{HeaderMsgID: []string{msgID}}})
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", p.subjects.Ready(group), err)
	}
	return ack, nil
}

// ReadyAsync is Ready without waiting for the stream's ack: publications on
// one connection keep their order, so a batch can be admitted at once.
func (p *Publisher) ReadyAsync(group string, job Job, msgID string) (jetstream.PubAckFuture, error) {
	data, err := json.Marshal(job)
	if err != nil {
		return nil, fmt.Errorf("encode job: %w", err)
	}
	f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: p.subjects.Ready(group), Data: data, Header: nats.Header{HeaderMsgID: []string{msgID}}})
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", p.subjects.Ready(group), err)
	}
	return f, nil
}

// Dead keeps a job that ran out of attempts on <prefix>.dead.<group>.
func (p *Publisher) Dead(ctx context.Context, group string, job Job, reason string) error {
	data, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("encode job: %w", err)
	}
	_, err = p.js.PublishMsg(ctx, &nats.Msg{Subject: p.subjects.Dead(group), Data: data,
		Header: nats.Header{HeaderMsgID: []string{job.ID + ".dead"}, HeaderError: []string{reason}}})
	if err != nil {
		return fmt.Errorf("publish to %s: %w", p.subjects.Dead(group), err)
	}
	return nil
}
