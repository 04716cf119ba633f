package worker

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/quota"
)

// A scrape of /metrics reads memory only: it must answer in milliseconds
// with every group's series, at 1,000 groups as at one. The worker keeps
// each group's quota and backlog current as it works — the ledger calls it
// makes update the usage (a reserved slot is used, a released one is not),
// admissions and acks move the backlog — and a slow background refresh
// reads the ledger and the lane consumer of a few groups at a time, for
// what other replicas did and what Braze's headers corrected.

// GroupGauges is one group's quota and backlog as last known in memory.
type GroupGauges struct {
	Group     string
	Cap       int
	Used      int
	Remaining int
	PeriodEnd time.Time
	Backlog   int // admitted jobs waiting or in flight
}

// gaugeRefreshEvery is how often the refresh re-reads each group; a group
// whose usage the worker cannot follow (after a ledger Sync) is re-read at
// the next tick, at most once per gaugeMinInterval.
const (
	gaugeRefreshEvery = 30 * time.Second
	gaugeTick         = 250 * time.Millisecond
	gaugeMaxPerTick   = 64 // NATS round trips per tick are twice this, at most
	// gaugeMinInterval spaces the re-reads of a busy group: every job's
	// ledger Sync marks it dirty.
	gaugeMinInterval = time.Second
)

// gaugeBoard holds the gauges of every group.
type gaugeBoard struct {
	mu     sync.Mutex
	groups map[string]*groupGauge
}

type groupGauge struct {
	u           quota.Usage
	haveUsage   bool
	backlog     int
	haveBacklog bool
	readAt      time.Time // last refresh; zero: never
	dirty       bool      // re-read soon: the worker could not follow a change
	opPaused    bool      // the lane consumer is paused by an operator (sendidctl pause) …
	opUntil     time.Time // … until then
}

func (b *gaugeBoard) get(group string) *groupGauge {
	if b.groups == nil {
		b.groups = map[string]*groupGauge{}
	}
	g, ok := b.groups[group]
	if !ok {
		g = &groupGauge{}
		b.groups[group] = g
	}
	return g
}

func (b *gaugeBoard) update(group string, fn func(*groupGauge)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fn(b.get(group))
}

// gaugeLedger is the worker's ledger, keeping the gauges as it answers.
type gaugeLedger struct {
	quota.Ledger
	board *gaugeBoard
}

func (l gaugeLedger) Reserve(ctx context.Context, group string) (quota.Slot, error) {
	s, err := l.Ledger.Reserve(ctx, group)
	var ex *quota.Exhausted
	switch {
	case err == nil:
		l.board.update(group, func(g *groupGauge) {
			if g.haveUsage && g.u.PeriodEnd.Equal(s.Period.End) {
				g.u.Used++
				g.u.Remaining = max(g.u.Remaining-1, 0)
			} else {
				g.dirty = true
			}
		})
	case errors.As(err, &ex):
		// Spent here or by another replica, or blocked by Braze: the ledger
		// knows which.
		l.board.update(group, func(g *groupGauge) { g.dirty = true })
	}
	return s, err
}

func (l gaugeLedger) Release(ctx context.Context, s quota.Slot) error {
	err := l.Ledger.Release(ctx, s)
	if err == nil {
		l.board.update(s.Group, func(g *groupGauge) {
			if g.haveUsage && g.u.PeriodEnd.Equal(s.Period.End) && g.u.Used > 0 {
				g.u.Used--
				g.u.Remaining = min(g.u.Remaining+1, g.u.Cap)
			} else {
				g.dirty = true
			}
		})
	}
	return err
}

// Settle records a call's answer, which Braze's headers may correct: the
// group is re-read at the next tick.
func (l gaugeLedger) Settle(ctx context.Context, s quota.Slot, obs quota.Observation, uncertain bool) error {
	err := l.Ledger.Settle(ctx, s, obs, uncertain)
	l.board.update(s.Group, func(g *groupGauge) { g.dirty = true })
	return err
}

// Sync may change the cap and the count in ways only the ledger knows: the
// group is re-read at the next tick.
func (l gaugeLedger) Sync(ctx context.Context, group string, obs quota.Observation) error {
	err := l.Ledger.Sync(ctx, group, obs)
	l.board.update(group, func(g *groupGauge) { g.dirty = true })
	return err
}

func (l gaugeLedger) Usage(ctx context.Context, group string) (quota.Usage, error) {
	u, err := l.Ledger.Usage(ctx, group)
	if err == nil {
		l.board.update(group, func(g *groupGauge) { g.u, g.haveUsage = u, true })
	}
	return u, err
}

// backlogMoved adds d to a group's backlog (an admission: +1, an answer: -1).
func (b *gaugeBoard) backlogMoved(group string, d int) {
	b.update(group, func(g *groupGauge) {
		if g.haveBacklog {
			g.backlog = max(g.backlog+d, 0)
		}
	})
}

// counted wraps a lane's message so that its final acknowledgement (ack or
// term) takes it off the group's backlog once.
func (b *gaugeBoard) counted(group string, m jetstream.Msg) jetstream.Msg {
	return &countedMsg{Msg: m, done: func() { b.backlogMoved(group, -1) }}
}

type countedMsg struct {
	jetstream.Msg
	once sync.Once
	done func()
}

func (m *countedMsg) finish(err error) error {
	if err == nil {
		m.once.Do(m.done)
	}
	return err
}

func (m *countedMsg) Ack() error { return m.finish(m.Msg.Ack()) }
func (m *countedMsg) DoubleAck(ctx context.Context) error {
	return m.finish(m.Msg.DoubleAck(ctx))
}
func (m *countedMsg) Term() error { return m.finish(m.Msg.Term()) }
func (m *countedMsg) TermWithReason(r string) error {
	return m.finish(m.Msg.TermWithReason(r))
}

// QuotaGauges returns every configured group's gauges from memory, sorted
// by group; a group not read yet is left out. It makes no NATS call.
func (w *Worker) QuotaGauges() []GroupGauges {
	groups := w.Groups()
	now := w.o.Clock.Now()
	out := make([]GroupGauges, 0, len(groups))
	b := &w.gauges
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, name := range groups {
		g, ok := b.groups[name]
		if !ok || !g.haveUsage {
			continue
		}
		gg := GroupGauges{Group: name, Cap: g.u.Cap, Used: g.u.Used, Remaining: g.u.Remaining, PeriodEnd: g.u.PeriodEnd, Backlog: -1}
		if !now.Before(g.u.PeriodEnd) {
			// The period turned since the last read: a fresh one is empty.
			if pol, ok := w.o.Policies.Get(name); ok {
				gg.Used, gg.Remaining, gg.PeriodEnd = 0, gg.Cap, pol.PeriodAt(now).End
			}
			g.dirty = true
		}
		if g.haveBacklog {
			gg.Backlog = g.backlog
		}
		out = append(out, gg)
	}
	return out
}

// refreshGauges re-reads groups' ledger usage and lane backlog, a few at a
// time, until ctx ends: never-read and dirty groups first, then the oldest,
// so that each group is read about every gaugeRefreshEvery.
func (w *Worker) refreshGauges(ctx context.Context) {
	// sendidctl pause and resume wake the group's lanes on every replica:
	// re-read its consumer at the next tick, for the operator pause gauge.
	wake := w.o.Subjects.Prefix + ".ctl.wake."
	sub, err := w.o.NC.Subscribe(wake+"*", func(m *nats.Msg) {
		w.gauges.update(m.Subject[len(wake):], func(g *groupGauge) { g.dirty = true })
	})
	if err != nil {
		w.log.Warn("operator pauses seen only at the periodic refresh", zap.Error(err))
	} else {
		defer func() { _ = sub.Unsubscribe() }()
	}
	for {
		w.refreshSome(ctx)
		select {
		case <-ctx.Done():
			return
		case <-w.o.Clock.After(gaugeTick):
		}
	}
}

func (w *Worker) refreshSome(ctx context.Context) {
	groups := w.Groups()
	now := w.o.Clock.Now()
	type due struct {
		name  string
		order int // 0 never read, 1 dirty, 2 old
		at    time.Time
	}
	var todo []due
	b := &w.gauges
	b.mu.Lock()
	for _, name := range groups {
		g := b.get(name)
		switch {
		case g.readAt.IsZero():
			todo = append(todo, due{name, 0, g.readAt})
		case g.dirty && now.Sub(g.readAt) >= gaugeMinInterval:
			todo = append(todo, due{name, 1, g.readAt})
		case now.Sub(g.readAt) >= gaugeRefreshEvery:
			todo = append(todo, due{name, 2, g.readAt})
		}
	}
	b.mu.Unlock()
	sort.Slice(todo, func(i, j int) bool {
		if todo[i].order != todo[j].order {
			return todo[i].order < todo[j].order
		}
		return todo[i].at.Before(todo[j].at)
	})
	// Spread the steady refresh over gaugeRefreshEvery, but catch up on
	// unread and dirty groups at once (bounded).
	n := max(len(groups)*int(gaugeTick)/int(gaugeRefreshEvery)+1, 0)
	for _, d := range todo {
		if d.order < 2 {
			n++
		}
	}
	todo = todo[:min(len(todo), n, gaugeMaxPerTick)]
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, d := range todo {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			w.refreshGroup(ctx, d.name)
		})
	}
	wg.Wait()
}

// refreshGroup reads one group's usage and backlog into the board.
func (w *Worker) refreshGroup(ctx context.Context, group string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l := w.lane(group)
	if l == nil || l.cons == nil {
		return
	}
	_, uerr := w.o.Ledger.Usage(ctx, group) // gaugeLedger records it
	info, ierr := l.cons.Info(ctx)
	w.gauges.update(group, func(g *groupGauge) {
		if uerr == nil && ierr == nil {
			g.readAt, g.dirty = w.o.Clock.Now(), false
		}
		if ierr == nil {
			g.backlog, g.haveBacklog = int(info.NumPending)+info.NumAckPending, true
			g.opPaused, g.opUntil = info.Paused, w.o.Clock.Now().Add(info.PauseRemaining)
		}
	})
	if uerr != nil || ierr != nil {
		w.log.Debug("gauges not refreshed", zap.String("app_group", group), zap.NamedError("usage", uerr), zap.NamedError("backlog", ierr))
	}
}

var _ quota.Ledger = gaugeLedger{}

// operatorPaused reports, from memory, whether group's lane consumer is
// paused by an operator now.
func (w *Worker) operatorPaused(group string) bool {
	now := w.o.Clock.Now()
	w.gauges.mu.Lock()
	defer w.gauges.mu.Unlock()
	g, ok := w.gauges.groups[group]
	return ok && g.opPaused && now.Before(g.opUntil)
}
