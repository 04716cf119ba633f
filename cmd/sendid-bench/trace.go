package main

import (
	"context"
	"encoding/json"
	"fmt"
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
// round trips (give or take a keep-alive or admission's pull refill).
type tracer struct {
	nc *nats.Conn
	on atomic.Bool

	mu     sync.Mutex
	stages map[string]*stageStats
}

type stageStats struct {
	d        []time.Duration
	out, in  uint64
	answered int // calls that received at least one message
	parallel bool
}

func (t *tracer) timer(stage string, parallel bool) func() {
	if !t.on.Load() {
		return func() {}
	}
	t0, s0 := time.Now(), t.nc.Stats()
	return func() {
		d, s1 := time.Since(t0), t.nc.Stats()
		t.mu.Lock()
		defer t.mu.Unlock()
		s := t.stages[stage]
		if s == nil {
			s = &stageStats{parallel: parallel}
			t.stages[stage] = s
		}
		s.d = append(s.d, d)
		s.out += s1.OutMsgs - s0.OutMsgs
		s.in += s1.InMsgs - s0.InMsgs
		if s1.InMsgs > s0.InMsgs {
			s.answered++
		}
	}
}

// waits is the step's sequential waits per job: its answers, counted once
// per call when its requests run concurrently.
func (s *stageStats) waits(jobs int) float64 {
	if s.parallel {
		return float64(s.answered) / float64(jobs)
	}
	return float64(s.in) / float64(jobs)
}

// traceRow is row j: one group, jobs published one at a time to an
// in-process worker whose StageTimer counts each step's round trips and
// time; the first delivery of a new pair, no retry.
func (b *bench) traceRow(ctx context.Context, n int) error {
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
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: 2 * time.Minute, Groups: 1}); err != nil {
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
	tr := &tracer{nc: nc, stages: map[string]*stageStats{}}
	clock := quota.SystemClock{}
	log := zap.NewNop()
	pols := quota.NewPolicies(log).UseClock(clock)
	w, err := sendid.New(sendid.Options{
		NC: nc, JS: js, Subjects: subj, Records: queue.NewRecords(bk.Jobs, bk.Pairs),
		Publisher: queue.NewPublisher(nc, js, subj, false), Ledger: quota.NewKV(bk.Ledger, pols, clock),
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

	answers := make(chan string, 16)
	sub, err := b.nc.Subscribe("bench.rt", func(m *nats.Msg) {
		var r struct{ ID, Status string }
		if json.Unmarshal(m.Data, &r) == nil && r.Status != queue.StatusDeferred {
			answers <- r.ID
		}
	})
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.Flush(); err != nil {
		return err
	}
	const warm = 20
	var total []time.Duration
	var s0 nats.Statistics
	for i := range warm + n {
		if i == warm {
			tr.on.Store(true)
			s0 = nc.Stats()
		}
		id := fmt.Sprintf("rt-%d", i)
		t0 := time.Now()
		if err := b.nc.Publish("rt.jobs", fmt.Appendf(nil, `{"campaign_id":"c","send_id":%q,"id":%q,"reply_to":"bench.rt"}`, id, id)); err != nil {
			return err
		}
		select {
		case got := <-answers:
			if got != id {
				return fmt.Errorf("row j: answer for %s while waiting for %s", got, id)
			}
		case <-time.After(30 * time.Second):
			return fmt.Errorf("row j: no answer for %s", id)
		}
		if i >= warm {
			total = append(total, time.Since(t0))
		}
		time.Sleep(2 * time.Millisecond) // let the lane's next pull and admission settle
	}
	tr.on.Store(false)
	s1 := nc.Stats()
	tr.mu.Lock()
	defer tr.mu.Unlock()

	var laneReq, laneWaits, admReq, admWaits float64
	var lines []row
	for _, name := range []string{sendid.StageAdmissionRecords, sendid.StageAdmissionForecast, sendid.StageAdmissionConfirm, sendid.StageAdmissionAck,
		sendid.StagePull, sendid.StageReserve, sendid.StageClaimRead, sendid.StagePairReserve, sendid.StageJobRecord, sendid.StageBraze,
		sendid.StagePostCall, sendid.StagePairCreated, sendid.StageFinalRecord, sendid.StageResultPublish, sendid.StageAck} {
		s := tr.stages[name]
		if s == nil {
			continue
		}
		req, waits := float64(s.out)/float64(n), s.waits(n)
		switch {
		case name == sendid.StageBraze:
		case name == sendid.StagePairCreated:
			// Alongside the steps after the call: its answer arrived
			// within one of them, which counted it as a wait.
			laneWaits -= waits
		case strings.HasPrefix(name, "admission"):
			admReq, admWaits = admReq+req, admWaits+waits
		default:
			laneReq, laneWaits = laneReq+req, laneWaits+waits
		}
		lines = append(lines, row{name: "   " + name, figure: fmt.Sprintf("p50 %s, p99 %s; %.1f sent, %.1f received, %.1f waits per job",
			ms(percentile(s.d, .5)), ms(percentile(s.d, .99)), req, float64(s.in)/float64(n), waits)})
	}
	b.add("j. sequential JetStream waits per job, lane (besides the Braze call)",
		fmt.Sprintf("%.1f (%.1f messages sent per job)", laneWaits, laneReq), "<= 3", laneWaits <= 3.05)
	b.add("j. admission per job (batches of one)", fmt.Sprintf("%.1f waits, %.1f messages sent", admWaits, admReq), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.add("j. worker connection per job, all told", fmt.Sprintf("%.1f sent, %.1f received",
		float64(s1.OutMsgs-s0.OutMsgs)/float64(n), float64(s1.InMsgs-s0.InMsgs)/float64(n)), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.add("j. one job, publish to answer", fmt.Sprintf("p50 %s, p99 %s (%d jobs one at a time)", ms(percentile(total, .5)), ms(percentile(total, .99)), n), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.rows = append(b.rows, lines...)
	return nil
}
