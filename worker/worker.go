package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// Group is one app group's live settings.
type Group struct {
	Name   string
	Key    braze.Key
	Sender Sender
	Policy quota.Policy
	// InDoubt is what a job does when an earlier call may have reached
	// Braze without its answer recorded (default InDoubtRetry).
	InDoubt InDoubtPolicy
	// ReplyAllow is the group's reply-subject allow-list; empty: the
	// worker's (Options.ReplyAllow).
	ReplyAllow []string
	// MaxBacklog bounds the group's admitted jobs; 0: unlimited.
	MaxBacklog int
}

// Options are the worker's collaborators and settings. Every field without
// a stated default is required.
type Options struct {
	NC        *nats.Conn
	JS        jetstream.JetStream
	Subjects  queue.Subjects
	Records   *queue.Records
	Publisher *queue.Publisher
	Ledger    quota.Ledger
	Pacer     *quota.Pacer
	Policies  *quota.Policies
	Clock     quota.Clock // default quota.SystemClock
	Log       *zap.Logger
	Metrics   *Metrics // default: unregistered collectors

	MaxJobBytes     int           // default 64 KiB
	MaxAttempts     int           // default 8
	CallTimeout     time.Duration // default 30s
	RetryBackoff    time.Duration // default 500ms
	RetryMax        time.Duration // default 1m
	ShutdownTimeout time.Duration // default 25s
	RecheckInterval time.Duration // default 1m
	ReplyAllow      []string
	// LaneFailover is how long a group's owning replica may go without
	// pulling before another takes the group over (default
	// queue.DefaultLaneFailover); see queue.EnsureLane.
	LaneFailover time.Duration
	// Stages, when set, traces each step of a job (stages.go); nil in
	// production.
	Stages StageTimer
}

// Worker runs admission and one lane per app group.
type Worker struct {
	o     Options
	log   *zap.Logger
	rules queue.ReplyRules

	mu       sync.RWMutex
	lanes    map[string]*lane
	runCtx   context.Context // set by Run; lanes added by Reload live in it
	hardCtx  context.Context
	wg       *sync.WaitGroup
	running  bool
	stopping bool
	admOK    bool

	rndMu sync.Mutex
	rnd   *rand.Rand

	health  consumerHealth // consumers being restored (consumers.go)
	gauges  gaugeBoard     // quota and backlog kept for scrapes (gauges.go)
	orphans orphanBoard    // jobs of groups no longer configured (orphans.go)
}

// New builds a worker for groups.
func New(o Options, groups []Group) (*Worker, error) {
	if o.NC == nil || o.JS == nil || o.Records == nil || o.Publisher == nil || o.Ledger == nil || o.Pacer == nil || o.Policies == nil || o.Log == nil {
		return nil, errors.New("worker: NC, JS, Records, Publisher, Ledger, Pacer, Policies and Log are required")
	}
	if o.Subjects.Prefix == "" {
		return nil, errors.New("worker: subject prefix is required")
	}
	setDefault(&o.MaxJobBytes, 64<<10)
	setDefault(&o.MaxAttempts, 8)
	setDefault(&o.CallTimeout, 30*time.Second)
	setDefault(&o.RetryBackoff, 500*time.Millisecond)
	setDefault(&o.RetryMax, time.Minute)
	setDefault(&o.ShutdownTimeout, 25*time.Second)
	setDefault(&o.RecheckInterval, time.Minute)
	setDefault(&o.LaneFailover, queue.DefaultLaneFailover)
	if o.Clock == nil {
		o.Clock = quota.SystemClock{}
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	sharePacer(o.Ledger, o.Pacer)
	w := &Worker{
		o: o, log: o.Log, lanes: map[string]*lane{},
		rules: queue.ReplyRules{Subjects: o.Subjects, Allow: o.ReplyAllow},
		rnd:   rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5e4d)),
	}
	w.o.Ledger = gaugeLedger{Ledger: w.o.Ledger, board: &w.gauges} // gauges.go
	for _, g := range groups {
		if err := g.Policy.Validate(); err != nil {
			return nil, fmt.Errorf("app group %s: %w", g.Name, err)
		}
		w.lanes[g.Name] = w.newLane(g)
	}
	return w, nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

func (w *Worker) newLane(g Group) *lane {
	w.o.Metrics.InitGroup(g.Name)
	w.o.Policies.Set(g.Name, g.Policy)
	w.o.Pacer.Set(g.Name, g.Policy)
	return newLane(w, g)
}

func (w *Worker) jitter(n int64) int64 {
	w.rndMu.Lock()
	defer w.rndMu.Unlock()
	return w.rnd.Int64N(n)
}

func (w *Worker) lane(group string) *lane {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.lanes[group]
}

// HasGroup reports whether group is configured.
func (w *Worker) HasGroup(group string) bool { return w.lane(group) != nil }

// Groups lists the configured app groups.
func (w *Worker) Groups() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]string, 0, len(w.lanes))
	for g := range w.lanes {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// Run consumes until ctx ends, then shuts down in order: stop fetching,
// give the calls in flight up to ShutdownTimeout, put back what did not
// finish. It returns nil after a clean shutdown.
func (w *Worker) Run(ctx context.Context) error {
	adm, err := queue.EnsureAdmission(ctx, w.o.JS, w.o.Subjects, w.o.LaneFailover)
	if err != nil {
		return err
	}
	// hardCtx bounds work in flight: it ends ShutdownTimeout after ctx, or
	// as soon as every lane and admission have stopped.
	hardCtx, hardCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hardCancel()
	timerDone := make(chan struct{})
	go func() {
		defer close(timerDone)
		select {
		case <-ctx.Done():
		case <-hardCtx.Done():
			return
		}
		w.mu.Lock()
		w.stopping = true
		w.mu.Unlock()
		select {
		case <-w.o.Clock.After(w.o.ShutdownTimeout):
			w.log.Warn("shutdown timeout: putting back the jobs in flight", zap.Duration("timeout", w.o.ShutdownTimeout))
			hardCancel()
		case <-hardCtx.Done():
		}
	}()
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		hardCancel()
		<-timerDone
	}()

	// Wake lanes when any replica admits a job for them.
	sub, err := w.o.NC.Subscribe(w.o.Subjects.Ready("*"), func(m *nats.Msg) {
		if g, err := w.o.Subjects.GroupOfReady(m.Subject); err == nil {
			if l := w.lane(g); l != nil {
				l.poke()
			}
		}
	})
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", w.o.Subjects.Ready("*"), err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	stopControl, err := w.serveControl(ctx)
	if err != nil {
		return fmt.Errorf("control subjects: %w", err)
	}
	defer stopControl()
	defer w.observeOperatorPauses()()
	defer w.watchDeletions()()
	stopOrphans, err := w.serveOrphans(ctx) // orphans.go
	if err != nil {
		return fmt.Errorf("control subjects: %w", err)
	}
	defer stopOrphans()

	w.mu.Lock()
	w.runCtx, w.hardCtx, w.wg, w.running = ctx, hardCtx, &wg, true
	lanes := make([]*lane, 0, len(w.lanes))
	for _, l := range w.lanes {
		lanes = append(lanes, l)
	}
	w.mu.Unlock()

	var startErr error
	for _, l := range lanes {
		cons, err := queue.EnsureLane(ctx, w.o.JS, w.o.Subjects, l.group, w.o.LaneFailover)
		if err != nil {
			startErr = w.explainLimit(err) // consumers.go
			break
		}
		l.cons = cons
	}
	if startErr == nil {
		for _, l := range lanes {
			wg.Go(func() { l.run(ctx, hardCtx) })
		}
	}
	if startErr != nil {
		return startErr
	}
	gaugeCtx, stopGauges := context.WithCancel(ctx) // lanes have their consumers now
	defer stopGauges()
	wg.Go(func() { w.refreshGauges(gaugeCtx) }) // gauges.go
	wg.Go(func() { w.scanOrphansLogged(ctx) })  // orphans.go
	a := &admission{w: w, cons: adm}
	wg.Go(func() { a.run(ctx, hardCtx) })
	wg.Wait()
	w.mu.Lock()
	w.running = false
	w.mu.Unlock()
	return nil
}

// Reload applies new keys, caps and bursts without dropping a job, wakes
// lanes paused for a configuration fault, and starts lanes for new groups.
// Removing a group takes a restart (its lane keeps running until then).
func (w *Worker) Reload(groups []Group) error {
	var errs []error
	for _, g := range groups {
		if err := g.Policy.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("app group %s: %w", g.Name, err))
			continue
		}
		if l := w.lane(g.Name); l != nil {
			w.o.Policies.Set(g.Name, g.Policy)
			w.o.Pacer.Set(g.Name, g.Policy)
			l.settings.Store(&g)
			l.resume()
			continue
		}
		l := w.newLane(g)
		w.mu.RLock()
		ctx, hard, wg, running := w.runCtx, w.hardCtx, w.wg, w.running
		w.mu.RUnlock()
		if running {
			cons, err := queue.EnsureLane(ctx, w.o.JS, w.o.Subjects, g.Name, w.o.LaneFailover)
			if err != nil {
				errs = append(errs, w.explainLimit(err)) // consumers.go
				continue
			}
			l.cons = cons
		}
		w.mu.Lock()
		w.lanes[g.Name] = l
		w.mu.Unlock()
		if running {
			wg.Go(func() { l.run(ctx, hard) })
		}
		w.log.Info("app group added", zap.String("app_group", g.Name))
	}
	if ctx := w.runContext(); ctx != nil {
		w.scanOrphansLogged(ctx) // orphans.go
	}
	return errors.Join(errs...)
}

// Ready returns nil when admission and every lane are running and no
// shutdown has begun; otherwise the reason.
func (w *Worker) Ready() error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	switch {
	case w.stopping:
		return errors.New("shutting down")
	case !w.running:
		return errors.New("worker not running")
	case !w.admOK:
		return errors.New("admission not running")
	}
	if err := w.health.err(); err != nil {
		return err
	}
	for g, l := range w.lanes {
		if !l.running.Load() {
			return fmt.Errorf("lane %s not running", g)
		}
	}
	return nil
}

func (w *Worker) setAdmissionRunning(ok bool) {
	w.mu.Lock()
	w.admOK = ok
	w.mu.Unlock()
}

// sleep waits d on the worker's clock; false if ctx ended first.
func (w *Worker) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-w.o.Clock.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

// LaneStatus is a snapshot of one lane for operators.
type LaneStatus struct {
	Group       string    `json:"app_group"`
	PausedUntil time.Time `json:"paused_until,omitzero"`
	PauseReason string    `json:"pause_reason,omitempty"`
	// Owner reports whether this replica owns the group now (see Owns).
	Owner bool `json:"owner"`
}

// Lanes reports every lane's pause state.
func (w *Worker) Lanes() []LaneStatus {
	var out []LaneStatus
	for _, g := range w.Groups() {
		if l := w.lane(g); l != nil {
			until, reason := l.pauseState()
			out = append(out, LaneStatus{Group: g, PausedUntil: until, PauseReason: reason, Owner: l.owns()})
		}
	}
	return out
}
