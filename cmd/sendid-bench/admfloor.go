package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/queue"
)

// answers counts, per job of row c ("bl-<i>"), whether any answer or
// notice reached its reply subject.
type answers struct {
	seen  []atomic.Bool
	count atomic.Int64
}

func (b *bench) countAnswers(subject, prefix string, n int) (*answers, func(), error) {
	a := &answers{seen: make([]atomic.Bool, n)}
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		// {"id":"bl-<i>",...}: the id is the first field a result carries.
		s := string(m.Data)
		k := strings.Index(s, `"id":"`+prefix)
		if k < 0 {
			return
		}
		s = s[k+len(`"id":"`+prefix):]
		i, err := strconv.Atoi(s[:max(strings.IndexByte(s, '"'), 0)])
		if err != nil || i < 0 || i >= n {
			return
		}
		if !a.seen[i].Swap(true) {
			a.count.Add(1)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	return a, func() { _ = sub.Unsubscribe() }, b.nc.Flush()
}

// wait waits until every job was answered or timeout passed.
func (a *answers) wait(n int, timeout time.Duration) int64 {
	for deadline := time.Now().Add(timeout); a.count.Load() < int64(n) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	return a.count.Load()
}

// admissionFloor is what the NATS server alone allows admission at
// `lanes` lane consumers: a stream shaped like SENDID (jobs.<g> and
// ready.<g>, work queue, file storage), a consumer with admission's two
// filters and one filtered consumer per group, n jobs published over the
// groups at once, then pulled and acked in batches with nothing else done
// (no record reads, no ready publish). oneFilter gives that consumer the
// single filter jobs.* instead. It returns jobs/s.
func (b *bench) admissionFloor(ctx context.Context, groups []string, lanes int, oneFilter bool, n int) (float64, error) {
	const name = "FLOOR"
	_ = b.js.DeleteStream(ctx, name)
	st, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"fl.jobs", "fl.jobs.*", "fl.ready.*"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, MaxConsumers: queue.MaxConsumers})
	if err != nil {
		return 0, err
	}
	defer func() { _ = b.js.DeleteStream(context.Background(), name) }()
	for _, g := range groups[:lanes] {
		if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "lane_" + g, FilterSubject: "fl.ready." + g,
			AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1}); err != nil {
			return 0, err
		}
	}
	filters := []string{"fl.jobs", "fl.jobs.*"}
	if oneFilter {
		filters = filters[1:]
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "admission", FilterSubjects: filters,
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1024, MaxDeliver: -1})
	if err != nil {
		return 0, err
	}
	var got atomic.Int64
	done := make(chan struct{})
	start := time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if got.Add(1) == int64(n) {
			close(done)
		}
	}, jetstream.PullMaxMessages(256))
	if err != nil {
		return 0, err
	}
	defer cc.Stop()
	if err := b.publishAsync(func(i int) string { return "fl.jobs." + groups[i%len(groups)] }, func(i int) []byte {
		return fmt.Appendf(nil, `{"campaign_id":"c","send_id":"fl-%d","id":"fl-%d","reply_to":"bench.fl"}`, i, i)
	}, n, nil); err != nil {
		return 0, err
	}
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		return 0, fmt.Errorf("admission floor: %d of %d jobs after 10 minutes", got.Load(), n)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	elapsed := time.Since(start)
	// The acks are asynchronous: wait until the server has removed them.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		info, err := st.Info(ctx)
		if err == nil && info.State.Msgs == 0 {
			elapsed = time.Since(start)
			break
		}
	}
	return float64(n) / elapsed.Seconds(), nil
}
