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
	// Release gives back a slot whose call certainly never reached Braze.
	Release(ctx context.Context, s Slot) error
	// Sync corrects the ledger with what Braze's headers said.
	Sync(ctx context.Context, group string, obs Observation) error
	// Usage is a snapshot of the group's current period.
	Usage(ctx context.Context, group string) (Usage, error)
}

// Slot is a granted reservation.
type Slot struct {
	Group  string
	Period Period
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
	// The group's pacer bucket (Bucket), written with each reservation of
	// a pacing ledger: tokens left and when, in unix µs (0: none yet).
	PacerTokens float64 `json:"pacer_tokens,omitempty"`
	PacerAt     int64   `json:"pacer_at_us,omitempty"`
}

func (r record) cap(configured int) int {
	if r.BrazeLimit > 0 && r.BrazeLimit < configured {
		return r.BrazeLimit
	}
	return configured
}

func (r record) until() time.Time {
	if r.Until == 0 {
		return time.Time{}
	}
	return time.UnixMilli(r.Until)
}

// reserve takes a slot or says until when none is available.
func (r record) reserve(group string, pol Policy, per Period, now time.Time) (record, error) {
	if r.Used >= r.cap(pol.Cap) {
		return r, &Exhausted{Group: group, Until: laterOf(per.End, r.until())}
	}
	if u := r.until(); u.After(now) {
		return r, &Exhausted{Group: group, Until: u}
	}
	r.Used++
	return r, nil
}

func (r record) release() record {
	r.Used = max(r.Used-1, 0)
	return r
}

// Blocks reports whether the observation stops calls until Braze's reset.
func (o Observation) Blocks() bool { return o.RateLimited || (o.Known && o.Remaining == 0) }

// sync applies Braze's view of the current period: used := max(used,
// limit-remaining), and the block of a 429 or Remaining 0.
func (r record) sync(obs Observation, now time.Time) record {
	if obs.Known {
		r.Used = max(r.Used, obs.Limit-obs.Remaining)
		r.BrazeLimit = obs.Limit
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
	c := r.cap(pol.Cap)
	return Usage{
		Group: group, Cap: c, Used: r.Used, Remaining: max(c-r.Used, 0),
		PeriodStart: per.Start, PeriodEnd: per.End, ExhaustedUntil: r.until(), BrazeLimit: r.BrazeLimit,
		Bucket: r.bucket(),
	}
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
	mu   sync.RWMutex
	m    map[string]Policy
	log  *zap.Logger
	told sync.Map // group → Braze limit already reported as above the cap
}

// NewPolicies returns an empty set.
func NewPolicies(log *zap.Logger) *Policies {
	return &Policies{m: map[string]Policy{}, log: log}
}

// Set adds or replaces a group's policy.
func (p *Policies) Set(group string, pol Policy) {
	p.mu.Lock()
	defer p.mu.Unlock()
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
	rec, err := m.recs[k].reserve(group, pol, per, now)
	if err != nil {
		return Slot{}, err
	}
	prev := func() Bucket { return m.recs[Key(group, previous(pol, per))].bucket() }
	rec, b, err := pace(m.pacer, group, rec, prev, now)
	if err != nil {
		return Slot{}, err
	}
	if m.pacer != nil {
		m.pacer.commit(group, b, true)
	}
	m.recs[k] = rec
	return Slot{Group: group, Period: per}, nil
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

// Sync implements Ledger.
func (m *Memory) Sync(_ context.Context, group string, obs Observation) error {
	pol, err := m.pols.lookup(group)
	if err != nil {
		return err
	}
	m.pols.noteLimit(group, pol, obs)
	now := m.clock.Now()
	cur := pol.PeriodAt(now)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, per := range syncPeriods(pol, cur, obs) {
		k := Key(group, per)
		if i == 0 {
			m.recs[k] = m.recs[k].sync(obs, now)
		} else { // Braze's counts describe the current period only
			m.recs[k] = m.recs[k].block(obs, now)
		}
	}
	return nil
}

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
