package quota

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Ledger is the authority for the hard cap. A slot is reserved before every
// call that may reach Braze; a crash leaks a slot, never over-spends.
type Ledger interface {
	// Reserve takes one slot in the group's current period, or returns an
	// *Exhausted error saying until when nothing can be granted.
	Reserve(ctx context.Context, group string) (Slot, error)
	// Release gives back a slot whose call Braze did not charge: it never
	// left the process, or Braze answered 401/403/404 or 429.
	Release(ctx context.Context, s Slot) error
	// Settle records the answer to the call made with s: Braze's headers in
	// obs are the truth for the period they describe (see record.sync), and
	// uncertain marks a call that may or may not have been charged (5xx,
	// timeout): it stays counted, marked uncertain, until headers or a 429
	// settle it.
	Settle(ctx context.Context, s Slot, obs Observation, uncertain bool) error
	// Sync corrects the ledger with what Braze's headers said, for an
	// answer whose slot was already settled or released.
	Sync(ctx context.Context, group string, obs Observation) error
	// Usage is a snapshot of the group's current period.
	Usage(ctx context.Context, group string) (Usage, error)
	// PaceWith makes Reserve take the group's pacer token with the slot
	// and keep the pacer's bucket in the record (see KV.PaceWith).
	PaceWith(p *Pacer)
}

// Slot is a granted reservation.
type Slot struct {
	Group  string
	Period Period
	// Probe is set on a slot granted beyond the cap because the rest of the
	// period was blocked only by uncertain charges: its answer settles them.
	Probe bool

	seen uint64 // the record's Answers when the slot was granted
}

// Exhausted is returned by Reserve when the group may not call until Until.
type Exhausted struct {
	Group string
	Until time.Time
}

func (e *Exhausted) Error() string {
	return fmt.Sprintf("quota of app group %s exhausted until %s", e.Group, e.Until.UTC().Format(time.RFC3339))
}

// ErrUnknownGroup is returned for a group with no policy.
var ErrUnknownGroup = errors.New("unknown app group")

// Observation is what Braze said after a call: its rate-limit headers, and
// whether the call was rejected with 429.
type Observation struct {
	Known       bool // Limit and Remaining are set
	Limit       int
	Remaining   int
	Reset       time.Time // zero if not sent
	RateLimited bool      // the call got 429
}

// Usage is a snapshot of one group's quota.
type Usage struct {
	Group          string    `json:"app_group"`
	Cap            int       `json:"cap"` // effective: the lower of configured and Braze's limit
	Used           int       `json:"used"`
	Remaining      int       `json:"remaining"`
	PeriodStart    time.Time `json:"period_start"`
	PeriodEnd      time.Time `json:"period_end"`
	ExhaustedUntil time.Time `json:"exhausted_until,omitzero"`
	BrazeLimit     int       `json:"braze_limit,omitempty"`
	// Uncertain counts the calls in Used that Braze may not have charged
	// (5xx, timeouts), until headers or a 429 settle them.
	Uncertain int `json:"uncertain,omitempty"`
	// InFlight counts the slots granted and not yet answered (leases too).
	InFlight int `json:"in_flight,omitempty"`
	// Bucket is the group's pacer bucket as last stored with a
	// reservation (zero if none this period); see Pacer.SharedTokens.
	Bucket Bucket `json:"-"`
}

// record is the ledger's state for one group and period; memory and KV
// ledgers store exactly this and change it only through the methods below.
type record struct {
	Used       int   `json:"used"`
	BrazeLimit int   `json:"braze_limit,omitempty"`
	Until      int64 `json:"exhausted_until_ms,omitempty"` // unix ms

	// The cap in force for every replica: the most recently configured one
	// (CapAt, unix ms, is when that replica loaded it).
	Cap   int   `json:"cap,omitempty"`
	CapAt int64 `json:"cap_at_ms,omitempty"`
	// InFlight counts slots granted and not yet settled or released; a
	// header never lowers Used below them.
	InFlight int `json:"in_flight,omitempty"`
	// Uncertain counts the calls in Used that may not have been charged;
	// ProbeAt (unix ms) is the last uncertain answer or probe, which paces
	// the next probe.
	Uncertain int   `json:"uncertain,omitempty"`
	ProbeAt   int64 `json:"probe_at_ms,omitempty"`
	// Answers counts the answers whose headers were applied. A header may
	// lower the count only when no other answer was applied since its slot
	// was granted: an older header (another replica's call answered before
	// ours, applied after) must not undo a newer one.
	Answers uint64 `json:"answers,omitempty"`
	// The group's pacer bucket (Bucket), written with each reservation of
	// a pacing ledger: tokens left and when, in unix µs (0: none yet).
	PacerTokens float64 `json:"pacer_tokens,omitempty"`
	PacerAt     int64   `json:"pacer_at_us,omitempty"`
}

// adopt makes pol's cap the one in force when it was configured more
// recently than the record's.
func (r record) adopt(pol Policy) record {
	if at := pol.capAt.UnixMilli(); r.Cap == 0 || (!pol.capAt.IsZero() && at > r.CapAt) {
		r.Cap, r.CapAt = pol.Cap, max(at, 0)
	}
	return r
}

// cap is the effective cap: the cap in force, lowered by Braze's limit.
func (r record) cap(pol Policy) int {
	c := r.Cap
	if c == 0 {
		c = pol.Cap
	}
	if r.BrazeLimit > 0 && r.BrazeLimit < c {
		return r.BrazeLimit
	}
	return c
}

func (r record) until() time.Time {
	if r.Until == 0 {
		return time.Time{}
	}
	return time.UnixMilli(r.Until)
}

// reserve takes a slot or says until when none is available. When the rest
// of the period is blocked only by uncertain charges it grants one probe
// per probe interval (probe is then true).
func (r record) reserve(group string, pol Policy, per Period, now time.Time) (_ record, probe bool, _ error) {
	r = r.adopt(pol)
	c := r.cap(pol)
	if r.Used >= c && r.Used-r.Uncertain >= c {
		return r, false, &Exhausted{Group: group, Until: laterOf(per.End, r.until())}
	}
	if u := r.until(); u.After(now) {
		return r, false, &Exhausted{Group: group, Until: u}
	}
	if r.Used >= c { // only uncertain charges stand in the way
		// A probe relies on Braze refusing it (429, not charged) if every
		// uncertain call was charged after all: none while Braze is known to
		// allow more than the cap in force.
		if r.BrazeLimit > c {
			return r, false, &Exhausted{Group: group, Until: laterOf(per.End, r.until())}
		}
		next := time.UnixMilli(r.ProbeAt).Add(pol.probeInterval())
		if now.Before(next) {
			return r, false, &Exhausted{Group: group, Until: earliest(next, per.End)}
		}
		r.ProbeAt, probe = now.UnixMilli(), true
	}
	r.Used++
	r.InFlight++
	return r, probe, nil
}

// release gives back a slot Braze did not charge.
func (r record) release() record {
	r.Used = max(r.Used-1, 0)
	r.InFlight = max(r.InFlight-1, 0)
	r.Uncertain = min(r.Uncertain, r.Used)
	return r
}

// unlease gives back n slots reserved for a lease and never handed out.
func (r record) unlease(n int) record {
	for range n {
		r = r.release()
	}
	return r
}

// settle records the answer to one granted call: no longer in flight; an
// uncertain answer without headers stays counted, marked uncertain.
func (r record) settle(obs Observation, uncertain bool, now time.Time) record {
	r.InFlight = max(r.InFlight-1, 0)
	if uncertain && !obs.Known && !obs.RateLimited {
		r.Uncertain = min(r.Uncertain+1, r.Used)
		r.ProbeAt = max(r.ProbeAt, now.UnixMilli())
	}
	return r
}

// Blocks reports whether the observation stops calls until Braze's reset.
func (o Observation) Blocks() bool { return o.RateLimited || (o.Known && o.Remaining == 0) }

// describes reports whether Braze's headers describe period per: Braze
// sent no reset, or its reset is per's end (to the second Braze reports).
func (o Observation) describes(per Period) bool {
	if o.Reset.IsZero() {
		return true
	}
	d := o.Reset.Sub(per.End)
	return d > -2*time.Second && d < 2*time.Second
}

// sync applies Braze's view of period per. When the headers describe per
// and lower is set (no other answer applied since the call's slot was
// granted), they are the truth: used := (limit - remaining) + slots still in
// flight, down as well as up, and every uncertain charge is settled. When
// they describe per but may be older than an answer already applied, they
// can only raise it. Otherwise (Braze's day is not ours) they can only
// raise the count, and uncertain charges are taken as charged. A 429 or
// Remaining 0 blocks until Braze's reset; a 429 also settles uncertain
// charges (Braze is at its cap, so they were charged).
func (r record) sync(obs Observation, per Period, now time.Time, lower bool) record {
	if obs.Known {
		charged := max(obs.Limit-obs.Remaining, 0)
		r.Answers++
		switch {
		case obs.describes(per) && lower:
			r.Used, r.Uncertain = charged+r.InFlight, 0
		case obs.describes(per):
			r.Used = max(r.Used, charged+r.InFlight)
		default:
			// Braze's day is not ours: its count can only raise ours, and
			// uncertain charges are taken as charged (no more probes).
			r.Used, r.Uncertain = max(r.Used, charged), 0
		}
		r.Uncertain = min(r.Uncertain, r.Used)
		r.BrazeLimit = obs.Limit
	}
	if obs.RateLimited {
		r.Uncertain = 0
	}
	return r.block(obs, now)
}

// block stops grants until Braze's reset when obs says so.
func (r record) block(obs Observation, now time.Time) record {
	if !obs.Blocks() {
		return r
	}
	until := obs.Reset
	if !until.After(now) {
		// Braze gave no usable reset: try again in a minute rather than
		// hammering or sleeping for a whole period.
		until = now.Add(time.Minute)
	}
	r.Until = max(r.Until, until.UnixMilli())
	return r
}

func (r record) usage(group string, pol Policy, per Period) Usage {
	r = r.adopt(pol)
	c := r.cap(pol)
	return Usage{
		Group: group, Cap: c, Used: r.Used, Remaining: max(c-r.Used, 0),
		PeriodStart: per.Start, PeriodEnd: per.End, ExhaustedUntil: r.until(), BrazeLimit: r.BrazeLimit,
		Uncertain: r.Uncertain, InFlight: r.InFlight,
		Bucket: r.bucket(),
	}
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// syncPeriods lists the periods an observation must be written to: the
// current one, and those up to Braze's reset when it lies beyond the
// current period (Braze's day need not match ours). At most three.
func syncPeriods(pol Policy, per Period, obs Observation) []Period {
	out := []Period{per}
	if !obs.Blocks() {
		return out
	}
	for len(out) < 3 && obs.Reset.After(out[len(out)-1].End) {
		out = append(out, pol.Advance(out[len(out)-1], 1))
	}
	return out
}

// Policies is the live set of app group policies, shared by ledgers and the
// pacer so that a configuration reload reaches both.
type Policies struct {
	mu    sync.RWMutex
	m     map[string]Policy
	log   *zap.Logger
	clock Clock
	told  sync.Map // group → Braze limit already reported as above the cap
}

// NewPolicies returns an empty set on the system clock.
func NewPolicies(log *zap.Logger) *Policies {
	return &Policies{m: map[string]Policy{}, log: log, clock: SystemClock{}}
}

// UseClock sets the clock that stamps configuration changes; call it before
// the first Set.
func (p *Policies) UseClock(c Clock) *Policies {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clock = c
	return p
}

// Set adds or replaces a group's policy. A changed cap is stamped with the
// time it was loaded: the most recently configured cap is the one every
// replica enforces (it is written into the shared ledger record). A change
// of Period or Location takes effect at the end of the period in force, so
// the day's count holds; the change is logged with that time.
func (p *Policies) Set(group string, pol Policy) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	old, ok := p.m[group]
	pol.capAt, pol.prior = now, nil
	if ok && old.Cap == pol.Cap {
		pol.capAt = old.capAt
	}
	switch {
	case ok && !old.sameCalendar(pol):
		before := old
		if before.prior != nil && !before.prior.at.After(now) {
			before.prior = nil
		}
		at := old.PeriodAt(now).End
		pol.prior = &transition{at: at, before: before}
		p.log.Info("quota period or timezone changed; it takes effect at the next period boundary",
			zap.String("app_group", group), zap.Time("takes_effect", at),
			zap.Duration("period", pol.Period), zap.String("timezone", pol.loc().String()))
	case ok && old.prior != nil && old.prior.at.After(now):
		pol.prior = old.prior // a change still pending
	}
	p.m[group] = pol
}

// Get returns a group's policy.
func (p *Policies) Get(group string) (Policy, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	pol, ok := p.m[group]
	return pol, ok
}

// lookup is Get with ErrUnknownGroup.
func (p *Policies) lookup(group string) (Policy, error) {
	pol, ok := p.Get(group)
	if !ok {
		return Policy{}, fmt.Errorf("%w %q", ErrUnknownGroup, group)
	}
	return pol, nil
}

// Groups lists the configured groups.
func (p *Policies) Groups() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]string, 0, len(p.m))
	for g := range p.m {
		out = append(out, g)
	}
	return out
}

// noteLimit logs once per group and limit when Braze reports a higher limit
// than configured: the configured cap keeps ruling.
func (p *Policies) noteLimit(group string, pol Policy, obs Observation) {
	if !obs.Known || obs.Limit <= pol.Cap {
		return
	}
	if prev, loaded := p.told.Swap(group, obs.Limit); loaded && prev.(int) == obs.Limit {
		return
	}
	p.log.Warn("braze reports a higher limit than configured; keeping the configured cap",
		zap.String("app_group", group), zap.Int("configured_cap", pol.Cap), zap.Int("braze_limit", obs.Limit))
}

// Memory is a Ledger for one process.
type Memory struct {
	pols  *Policies
	clock Clock
	mu    sync.Mutex
	recs  map[string]record
	pacer *Pacer // set by PaceWith
}

var _ Ledger = (*Memory)(nil)

// NewMemory returns an empty in-memory ledger.
func NewMemory(pols *Policies, clock Clock) *Memory {
	return &Memory{pols: pols, clock: clock, recs: map[string]record{}}
}

// Reserve implements Ledger.
func (m *Memory) Reserve(_ context.Context, group string) (Slot, error) {
	pol, err := m.pols.lookup(group)
	if err != nil {
		return Slot{}, err
	}
	now := m.clock.Now()
	per := pol.PeriodAt(now)
	k := Key(group, per)
	m.mu.Lock()
	defer m.mu.Unlock()
	orig := m.recs[k]
	rec, probe, err := orig.reserve(group, pol, per, now)
	m.recs[k] = rec
	if err != nil {
		return Slot{}, err
	}
	prev := func() Bucket { return m.recs[Key(group, previous(pol, per))].bucket() }
	paced, b, err := pace(m.pacer, group, rec, prev, now)
	if err != nil {
		m.recs[k] = orig // no slot without its token
		return Slot{}, err
	}
	if m.pacer != nil {
		m.pacer.commit(group, b, true)
	}
	m.recs[k] = paced
	return Slot{Group: group, Period: per, Probe: probe, seen: rec.Answers}, nil
}

// Release implements Ledger.
func (m *Memory) Release(_ context.Context, s Slot) error {
	k := Key(s.Group, s.Period)
	m.mu.Lock()
	defer m.mu.Unlock()
	if rec, ok := m.recs[k]; ok {
		m.recs[k] = rec.release()
	}
	return nil
}

// Settle implements Ledger.
func (m *Memory) Settle(_ context.Context, s Slot, obs Observation, uncertain bool) error {
	pol, err := m.pols.lookup(s.Group)
	if err != nil {
		return err
	}
	now := m.clock.Now()
	if !samePeriod(pol.PeriodAt(now), s.Period) {
		k := Key(s.Group, s.Period)
		m.mu.Lock()
		if rec, ok := m.recs[k]; ok {
			m.recs[k] = rec.settle(obs, uncertain, now)
		}
		m.mu.Unlock()
		return m.apply(s.Group, pol, obs, func(r record) (record, bool) { return r, false })
	}
	return m.apply(s.Group, pol, obs, func(r record) (record, bool) {
		return r.settle(obs, uncertain, now), r.Answers == s.seen
	})
}

// Sync implements Ledger.
func (m *Memory) Sync(_ context.Context, group string, obs Observation) error {
	pol, err := m.pols.lookup(group)
	if err != nil {
		return err
	}
	return m.apply(group, pol, obs, func(r record) (record, bool) { return r, false })
}

// apply runs pre and then Braze's headers on the current period (lowering
// only when pre says so), and a block on the periods up to Braze's reset.
func (m *Memory) apply(group string, pol Policy, obs Observation, pre func(record) (record, bool)) error {
	m.pols.noteLimit(group, pol, obs)
	now := m.clock.Now()
	cur := pol.PeriodAt(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, per := range syncPeriods(pol, cur, obs) {
		k := Key(group, per)
		if i == 0 {
			r, lower := pre(m.recs[k])
			m.recs[k] = r.adopt(pol).sync(obs, per, now, lower)
		} else { // Braze's counts describe the current period only
			m.recs[k] = m.recs[k].block(obs, now)
		}
	}
	return nil
}

func samePeriod(a, b Period) bool { return a.Start.Equal(b.Start) && a.End.Equal(b.End) }

// Usage implements Ledger.
func (m *Memory) Usage(_ context.Context, group string) (Usage, error) {
	pol, err := m.pols.lookup(group)
	if err != nil {
		return Usage{}, err
	}
	per := pol.PeriodAt(m.clock.Now())
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.recs[Key(group, per)].usage(group, pol, per), nil
}

// Key is the ledger key of a group's period: "<group>.<start unix>", with
// any character outside JetStream KV's key alphabet replaced by '_'.
func Key(group string, per Period) string {
	b := make([]byte, 0, len(group)+12)
	for i := 0; i < len(group); i++ {
		c := group[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b = append(b, c)
		default:
			b = append(b, '_')
		}
	}
	b = append(b, '.')
	return fmt.Sprintf("%s%d", b, per.Start.Unix())
}
