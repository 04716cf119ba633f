package worker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
)

// Consumers can disappear under a running worker: an operator's
// `nats consumer rm`, a stream restored from a backup, a server that lost
// its state. Admission and every lane watch theirs: a pull that reports
// the consumer deleted or missing, lost heartbeats, or the server's
// consumer-deleted advisory make them bring it back with the same
// configuration (queue.EnsureAdmission / queue.EnsureLane, idempotent, so
// replicas doing it at once agree), log it, count it in
// sendid_consumer_recreated_total{consumer}, and resume. /readyz is 503
// with the reason meanwhile.

// consumerLost reports errors that say a consumer may be gone: deleted
// while we pulled, missing when asked for, silent (no heartbeat), or no
// responder to a pull (a pull request to a consumer that does not exist).
// restore tells a missing consumer from a passing hiccup.
func consumerLost(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDoesNotExist) ||
		errors.Is(err, nats.ErrNoResponders)
}

// consumerHealth is the set of consumers being restored, for readiness,
// and the lanes' deletion signals.
type consumerHealth struct {
	mu    sync.Mutex
	lost  map[string]string     // consumer name → why it is being restored
	lanes map[string]chan error // group → its lane's deletion signal ("": admission's)
}

// admLost is the channel on which admission hears that the server deleted
// its consumer.
func (w *Worker) admLost() chan error { return w.laneLost("") }

// laneLost is the channel on which group's lane hears that the server
// deleted its consumer (buffered: a signal waits for the lane).
func (w *Worker) laneLost(group string) chan error {
	h := &w.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lanes == nil {
		h.lanes = map[string]chan error{}
	}
	ch, ok := h.lanes[group]
	if !ok {
		ch = make(chan error, 1)
		h.lanes[group] = ch
	}
	return ch
}

func (h *consumerHealth) set(name, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost == nil {
		h.lost = map[string]string{}
	}
	h.lost[name] = reason
}

func (h *consumerHealth) clear(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.lost, name)
}

// err describes the consumers being restored; nil when there are none.
func (h *consumerHealth) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.lost) == 0 {
		return nil
	}
	names := make([]string, 0, len(h.lost))
	for n := range h.lost {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("consumer %s being restored (%s)", n, h.lost[n]))
	}
	return errors.New(strings.Join(parts, "; "))
}

// restore brings back consumer name after why: when it is gone it is
// recreated with ensure; when it is still there (heartbeats lost to a
// network blip, another replica was faster) it is simply bound again. It
// keeps trying, with backoff, until it succeeds or ctx ends (then it
// returns ctx's error).
func (w *Worker) restore(ctx context.Context, name string, why error, ensure func(context.Context) (jetstream.Consumer, error)) (jetstream.Consumer, error) {
	reason := why.Error()
	w.health.set(name, reason)
	defer w.health.clear(name)
	w.log.Warn("consumer lost; restoring it", zap.String("consumer", name), zap.Error(why))
	for attempt := 1; ; attempt++ {
		c, err := w.o.JS.Consumer(ctx, queue.Stream, name)
		switch {
		case err == nil:
			w.log.Info("consumer still there; resuming", zap.String("consumer", name))
			return c, nil
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			if c, err = ensure(ctx); err == nil {
				w.o.Metrics.ConsumerRecreated.WithLabelValues(name).Inc()
				w.log.Warn("consumer recreated", zap.String("consumer", name), zap.String("reason", reason))
				return c, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		w.health.set(name, reason+"; last attempt: "+err.Error())
		w.log.Warn("consumer not restored yet; retrying", zap.String("consumer", name), zap.Int("attempt", attempt), zap.Error(err))
		if !w.sleep(ctx, min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)) {
			return nil, ctx.Err()
		}
	}
}

// restoreAdmission is restore for the admission consumer.
func (w *Worker) restoreAdmission(ctx context.Context, why error) (jetstream.Consumer, error) {
	return w.restore(ctx, queue.AdmissionName, why, func(ctx context.Context) (jetstream.Consumer, error) {
		return queue.EnsureAdmission(ctx, w.o.JS, w.o.Subjects, w.o.LaneFailover)
	})
}

// restoreLane is restore for a group's lane consumer.
func (w *Worker) restoreLane(ctx context.Context, group string, why error) (jetstream.Consumer, error) {
	return w.restore(ctx, queue.LaneConsumer(group), why, func(ctx context.Context) (jetstream.Consumer, error) {
		return queue.EnsureLane(ctx, w.o.JS, w.o.Subjects, group, w.o.LaneFailover)
	})
}

// restore brings the lane's consumer back (see Worker.restore). The lane
// keeps its consumer handle: it addresses the consumer by name, so it
// reaches the recreated one, and it is read by admission and status
// requests too.
func (l *lane) restore(ctx context.Context, why error) {
	_, _ = l.w.restoreLane(ctx, l.group, why)
	// A deletion announced and also seen by the pull is one deletion.
	select {
	case <-l.w.laneLost(l.group):
	default:
	}
}

// deleted returns the deletion the server announced for the lane's
// consumer, if any, without waiting.
func (l *lane) deleted() error {
	select {
	case why := <-l.w.laneLost(l.group):
		return why
	default:
		return nil
	}
}

// errConsumerDeletedAdvisory is why a consumer is restored after the
// server announced its deletion.
var errConsumerDeletedAdvisory = errors.New("the server announced the consumer's deletion")

// watchDeletions subscribes to the server's consumer-deleted advisories of
// the SENDID stream, so that an idle lane or admission notices a deletion
// at once rather than at its next pull. Accounts that may not read
// advisories still have the pull errors; the subscription failing is only
// logged.
func (w *Worker) watchDeletions() func() {
	subject := "$JS.EVENT.ADVISORY.CONSUMER.DELETED." + queue.Stream + ".*"
	sub, err := w.o.NC.Subscribe(subject, func(m *nats.Msg) {
		name := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		if name == queue.AdmissionName {
			select {
			case w.admLost() <- errConsumerDeletedAdvisory:
			default:
			}
			return
		}
		if g, ok := strings.CutPrefix(name, queue.LaneConsumer("")); ok {
			if l := w.lane(g); l != nil {
				select {
				case w.laneLost(g) <- errConsumerDeletedAdvisory:
				default:
				}
				l.poke()
			}
		}
	})
	if err != nil {
		w.log.Warn("consumer deletions not watched; pull errors still reveal them", zap.String("subject", subject), zap.Error(err))
		return func() {}
	}
	return func() { _ = sub.Unsubscribe() }
}

// explainLimit words the server's "maximum consumers limit reached" for an
// operator: the stream holds one consumer per app group plus admission,
// and also those an operator or a removed group left behind.
func (w *Worker) explainLimit(err error) error {
	if !errors.Is(err, jetstream.ErrMaximumConsumersLimit) {
		return err
	}
	return fmt.Errorf("%d app groups configured need %d consumers on stream %s (one per group plus admission, besides any other consumer of the stream), more than the account's JetStream limit allows: remove groups, delete unused consumers or raise the limit: %w",
		len(w.Groups()), len(w.Groups())+1, queue.Stream, err)
}
