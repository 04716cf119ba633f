package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	sendid "github.com/sendid/sendid/worker"
)

// tracer is the worker's StageTimer in row j: per step, its durations and
// the messages its connection sent and received meanwhile (nats.Conn
// Stats deltas). Jobs go one at a time, so a step's deltas are its own
// round trips, give or take what runs alongside it: a step whose requests
// run concurrently (parallel) claims one answer, and a step whose requests
// follow one another counts the answers it received less those claimed by
// steps that ended meanwhile. The ledger's steps (reserve, settle) count
// the ledger's own requests instead (quota.KV.RoundTrips): only the lane
// uses it while they run, and its requests follow one another.
type tracer struct {
	nc      *nats.Conn
	ledger  *quota.KV
	on      atomic.Bool
	job     atomic.Int64  // the job being traced
	claimed atomic.Uint64 // answers claimed by parallel steps

	mu     sync.Mutex
	stages map[string]*stageStats
	calls  []call
}

type stageStats struct {
	d       []time.Duration
	out, in uint64
	waits   uint64
}

// call is one step of one job.
type call struct {
	stage      string
	start, end time.Time
	waits      uint64
	job        int64
}

func (t *tracer) timer(stage string, parallel bool) func() {
	if !t.on.Load() {
		return func() {}
	}
	t0, s0, c0, l0 := time.Now(), t.nc.Stats(), t.claimed.Load(), t.ledger.RoundTrips()
	return func() {
		t1, s1 := time.Now(), t.nc.Stats()
		in := s1.InMsgs - s0.InMsgs
		var waits uint64
		switch {
		case stage == sendid.StageReserve || stage == sendid.StagePostCall:
			waits = t.ledger.RoundTrips() - l0
		case parallel && in > 0:
			waits = 1
			t.claimed.Add(1)
		case !parallel:
			if others := t.claimed.Load() - c0; in > others {
				waits = in - others
			}
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		s := t.stages[stage]
		if s == nil {
			s = &stageStats{}
			t.stages[stage] = s
		}
		s.d = append(s.d, t1.Sub(t0))
		s.out += s1.OutMsgs - s0.OutMsgs
		s.in += in
		s.waits += waits
		t.calls = append(t.calls, call{stage: stage, start: t0, end: t1, waits: waits, job: t.job.Load()})
	}
}

// criticalPath is the lane's sequential waits per job: its steps in start
// order, those that overlap merged into one whose waits are the longest
// branch's.
func (t *tracer) criticalPath(jobs int) float64 {
	byJob := map[int64][]call{}
	for _, c := range t.calls {
		if strings.HasPrefix(c.stage, "admission") || c.stage == sendid.StageBraze {
			continue
		}
		byJob[c.job] = append(byJob[c.job], c)
	}
	var total uint64
	for _, cs := range byJob {
		slices.SortFunc(cs, func(a, b call) int { return a.start.Compare(b.start) })
		var groupEnd time.Time
		var groupWaits uint64
		for _, c := range cs {
			if c.start.Before(groupEnd) {
				groupWaits = max(groupWaits, c.waits)
				groupEnd = later(groupEnd, c.end)
				continue
			}
			total += groupWaits
			groupEnd, groupWaits = c.end, c.waits
		}
		total += groupWaits
	}
	return float64(total) / float64(jobs)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// traceRow is row j: one group, jobs published one at a time to an
// in-process worker whose StageTimer counts each step's round trips and
// time; the first delivery of a new pair, no retry.
func (b *bench) traceRow(ctx context.Context, n, burst int) error {
	for _, st := range []string{queue.Stream, queue.ResultsStream} {
		_ = b.js.DeleteStream(ctx, st)
	}
	for _, kv := range []string{queue.JobsBucket, queue.PairsBucket, queue.LedgerBucket} {
		_ = b.js.DeleteKeyValue(ctx, kv)
	}
	nc, err := nats.Connect(b.ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	subj := queue.Subjects{Prefix: "rt"}
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: 2 * time.Minute, Groups: 1,
		Results: true, ResultsMaxAge: time.Hour}); err != nil {
		return fmt.Errorf("row j: %w", err)
	}
	bk, err := queue.EnsureBuckets(ctx, js, queue.BucketSettings{Replicas: 1, LedgerTTL: 72 * time.Hour, JobRecordTTL: time.Hour, PairTTL: time.Hour})
	if err != nil {
		return fmt.Errorf("row j: %w", err)
	}
	client, err := braze.New(b.sim.URL)
	if err != nil {
		return err
	}
	clock := quota.SystemClock{}
	log := zap.NewNop()
	pols := quota.NewPolicies(log).UseClock(clock)
	ledger := quota.NewKV(bk.Ledger, pols, clock)
	tr := &tracer{nc: nc, ledger: ledger, stages: map[string]*stageStats{}}
	w, err := sendid.New(sendid.Options{
		NC: nc, JS: js, Subjects: subj, Records: queue.NewRecords(bk.Jobs, bk.Pairs),
		Publisher: queue.NewPublisher(nc, js, subj, true), Ledger: ledger,
		Pacer: quota.NewPacer(clock), Policies: pols, Clock: clock, Log: log, RecheckInterval: time.Hour,
		Stages: tr.timer,
	}, []sendid.Group{{Name: queue.DefaultGroup, Key: "trace-key", Sender: client,
		Policy: quota.Policy{Cap: 100_000_000, Burst: 1_000_000, Period: time.Second}}})
	if err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	defer func() { stop(); <-done }()
	for deadline := time.Now().Add(30 * time.Second); w.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("row j: worker not ready: %w", w.Ready())
		}
	}

	answers, unsub, err := b.answers("bench.rt")
	if err != nil {
		return err
	}
	defer unsub()
	const warm = 20
	var total []time.Duration
	var s0 nats.Statistics
	for i := range warm + n {
		tr.job.Store(int64(i))
		if i == warm {
			tr.on.Store(true)
			s0 = nc.Stats()
		}
		d, err := b.oneJob(answers, fmt.Sprintf("rt-%d", i), `,"reply_to":"bench.rt"`)
		if err != nil {
			return err
		}
		if i >= warm {
			total = append(total, d)
		}
	}
	tr.on.Store(false)
	s1 := nc.Stats()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	order := []string{sendid.StageAdmissionRecords, sendid.StageAdmissionForecast, sendid.StageAdmissionConfirm, sendid.StageAdmissionAck,
		sendid.StagePull, sendid.StageReserve, sendid.StageClaimRead, sendid.StagePairReserve, sendid.StageJobRecord, sendid.StageBraze,
		sendid.StagePostCall, sendid.StagePairCreated, sendid.StageFinalRecord, sendid.StageResultPublish, sendid.StageAck}

	var admReq, admWaits float64
	var lines []row
	for _, name := range order {
		s := tr.stages[name]
		if s == nil {
			continue
		}
		req, waits := float64(s.out)/float64(n), float64(s.waits)/float64(n)
		switch {
		case name == sendid.StageBraze:
		case strings.HasPrefix(name, "admission"):
			admReq, admWaits = admReq+req, admWaits+waits
		}
		lines = append(lines, row{name: "   " + name, figure: fmt.Sprintf("p50 %s, p99 %s; %.1f sent, %.1f received, %.1f waits per job",
			ms(percentile(s.d, .5)), ms(percentile(s.d, .99)), req, float64(s.in)/float64(n), waits)})
	}
	laneWaits := tr.criticalPath(n)
	b.add("j. sequential JetStream waits per job, lane (besides the Braze call)",
		fmt.Sprintf("%.1f, the pull included (steps below)", laneWaits), "<= 3", laneWaits <= 3.05)
	b.add("j. admission per job (batches of one)", fmt.Sprintf("%.1f waits, %.1f messages sent", admWaits, admReq), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.add("j. worker connection per job, all told", fmt.Sprintf("%.1f sent, %.1f received",
		float64(s1.OutMsgs-s0.OutMsgs)/float64(n), float64(s1.InMsgs-s0.InMsgs)/float64(n)), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.add("j. one job, publish to answer", fmt.Sprintf("p50 %s, p99 %s (%d jobs one at a time)", ms(percentile(total, .5)), ms(percentile(total, .99)), n), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.rows = append(b.rows, lines...)
	tr.stages, tr.calls = map[string]*stageStats{}, nil
	tr.mu.Unlock()
	if err := b.traceStream(ctx, tr, n); err != nil {
		tr.mu.Lock()
		return err
	}
	err = b.traceBurst(ctx, tr, burst, order)
	tr.mu.Lock()
	return err
}

// answers subscribes to subject and hands over the ids of the final
// answers published there (deferred notices left out).
func (b *bench) answers(subject string) (<-chan string, func(), error) {
	ch := make(chan string, 16)
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		var r struct{ ID, Status string }
		if json.Unmarshal(m.Data, &r) == nil && r.Status != queue.StatusDeferred {
			ch <- r.ID
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return ch, func() { _ = sub.Unsubscribe() }, b.nc.Flush()
}

// oneJob publishes job id (its send_id too; extra is added to the JSON
// body, e.g. a reply_to) to row j's group, waits for its answer on answers
// and returns how long that took; then it lets the lane's next pull and
// admission settle for 2 ms.
func (b *bench) oneJob(answers <-chan string, id, extra string) (time.Duration, error) {
	t0 := time.Now()
	if err := b.nc.Publish("rt.jobs", fmt.Appendf(nil, `{"campaign_id":"c","send_id":%q,"id":%q%s}`, id, id, extra)); err != nil {
		return 0, err
	}
	select {
	case got := <-answers:
		if got != id {
			return 0, fmt.Errorf("row j: answer for %s while waiting for %s", got, id)
		}
	case <-time.After(30 * time.Second):
		return 0, fmt.Errorf("row j: no answer for %s", id)
	}
	d := time.Since(t0)
	time.Sleep(2 * time.Millisecond)
	return d, nil
}

// traceStream is row j's pass without reply_to: results go to the group's
// subject on the SENDID_RESULTS stream, so the lane waits for the result's
// publish ack (after the records: a crash before them is answered from the
// records, never with a second answer).
func (b *bench) traceStream(ctx context.Context, tr *tracer, n int) error {
	answers, unsub, err := b.answers("rt.results.default")
	if err != nil {
		return err
	}
	defer unsub()
	var total []time.Duration
	for i := range n {
		tr.job.Store(int64(1_000_000 + i))
		tr.on.Store(true)
		d, err := b.oneJob(answers, fmt.Sprintf("rs-%d", i), "")
		if err != nil {
			return err
		}
		total = append(total, d)
	}
	tr.on.Store(false)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	waits := tr.criticalPath(n)
	b.add("j. the same without reply_to (results on the SENDID_RESULTS stream)",
		fmt.Sprintf("%.1f waits, the pull included; publish to answer p50 %s, p99 %s", waits, ms(percentile(total, .5)), ms(percentile(total, .99))), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	tr.stages, tr.calls = map[string]*stageStats{}, nil
	return nil
}

// traceBurst is row j's second part: burst jobs published at once, as in
// row a, and where the lane's time goes: each step's p50, p99 and share of
// the wall time (one lane works one job at a time).
func (b *bench) traceBurst(ctx context.Context, tr *tracer, n int, order []string) error {
	var got atomic.Int64
	sub, err := b.nc.Subscribe("bench.rb", func(m *nats.Msg) {
		var r struct{ Status string }
		if json.Unmarshal(m.Data, &r) == nil && r.Status != queue.StatusDeferred {
			got.Add(1)
		}
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.Flush(); err != nil {
		return err
	}
	tr.on.Store(true)
	start := time.Now()
	if err := b.publishAsync(func(int) string { return "rt.jobs" }, func(i int) []byte {
		return fmt.Appendf(nil, `{"campaign_id":"c","send_id":"rb-%d","id":"rb-%d","reply_to":"bench.rb"}`, i, i)
	}, n, nil); err != nil {
		return err
	}
	for deadline := time.Now().Add(5 * time.Minute); got.Load() < int64(n); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("row j: %d of %d answers", got.Load(), n)
		}
	}
	elapsed := time.Since(start)
	tr.on.Store(false)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	b.add(fmt.Sprintf("j. burst of %d jobs, in-process worker", n), fmt.Sprintf("%.0f jobs/s, %s per job", float64(n)/elapsed.Seconds(), ms(elapsed/time.Duration(n))), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	for _, name := range order {
		s := tr.stages[name]
		if s == nil {
			continue
		}
		var sum time.Duration
		for _, d := range s.d {
			sum += d
		}
		b.rows = append(b.rows, row{name: "   " + name, figure: fmt.Sprintf("p50 %s, p99 %s; %.0f%% of the wall time",
			ms(percentile(s.d, .5)), ms(percentile(s.d, .99)), 100*float64(sum)/float64(elapsed))})
	}
	return nil
}
