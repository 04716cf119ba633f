package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// KV is a Ledger in a JetStream key-value bucket, shared by every replica:
// one key per app group and period ("<group>.<period start unix>"), changed
// only by compare-and-swap. The bucket should have History 1 and a TTL of a
// few periods (queue.EnsureBuckets creates it so); keys are never reset, so a
// restart of a worker or of the server cannot refill a period.
type KV struct {
	kv    jetstream.KeyValue
	pols  *Policies
	clock Clock

	mu    sync.Mutex
	lease map[string]int // ledger key → slots reserved in KV, not yet handed out
	pacer *Pacer         // set by PaceWith

	// last is each key's record as this ledger last read or wrote it
	// (kvcache.go): a change starts from it with one compare-and-swap and
	// reads the key only when that fails.
	lastMu sync.Mutex
	last   map[string]cached
	trips  atomic.Uint64 // requests to the bucket (RoundTrips)
}

// leaseSize is how many slots one compare-and-swap reserves for a group: about
// 50ms of its rate, 1 to 32. Groups slower than 20 calls/s (100/day) reserve
// one at a time; a crash leaks at most a lease, never over-spends.
func leaseSize(pol Policy) int {
	rate := float64(pol.Cap) / pol.Period.Seconds()
	return min(max(int(rate*0.05), 1), 32)
}

var _ Ledger = (*KV)(nil)

// maxCASTries bounds a compare-and-swap loop; contention among a handful of
// replicas settles in a few tries (8 clients: 136 tries for 100 grants).
const maxCASTries = 1000

// NewKV returns a ledger over the bucket kv.
func NewKV(kv jetstream.KeyValue, pols *Policies, clock Clock) *KV {
	return &KV{kv: kv, pols: pols, clock: clock, lease: map[string]int{}, last: map[string]cached{}}
}

// update applies fn to the record under key with compare-and-swap, retrying
// on conflict. fn's error is returned after its record is written (a
// refusal may still record the cap in force); an unchanged record is not
// written.
func (l *KV) update(ctx context.Context, key string, fn func(record) (record, error)) error {
	if done, err := l.updateLast(ctx, key, fn); done {
		return err
	}
	for range maxCASTries {
		var (
			rec record
			rev uint64
		)
		l.trips.Add(1)
		e, err := l.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("ledger get %s: %w", key, err)
		default:
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return fmt.Errorf("ledger decode %s: %w", key, err)
			}
			rev = e.Revision()
			l.remember(key, rec, rev)
		}
		next, fnErr := fn(rec)
		if next == rec && (rev != 0 || fnErr != nil) {
			return fnErr
		}
		data, _ := json.Marshal(next)
		var wrote uint64
		l.trips.Add(1)
		if rev == 0 {
			wrote, err = l.kv.Create(ctx, key, data)
		} else {
			wrote, err = l.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			l.remember(key, next, wrote)
			return fnErr
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("ledger write %s: %w", key, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("ledger write %s: gave up after %d conflicting updates", key, maxCASTries)
}

// get reads the record under key (zero when missing).
func (l *KV) get(ctx context.Context, key string) (record, error) {
	var rec record
	l.trips.Add(1)
	e, err := l.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return rec, fmt.Errorf("ledger get %s: %w", key, err)
	default:
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return rec, fmt.Errorf("ledger decode %s: %w", key, err)
		}
		l.remember(key, rec, e.Revision())
	}
	return rec, nil
}

// Reserve implements Ledger. A group that leases hands out a leased slot
// only after reading the shared record: the cap in force (lowered by a
// reload on any replica or by Braze's limit) and any block another replica
// wrote are checked before every grant; a lease that no longer fits is
// given back.
func (l *KV) Reserve(ctx context.Context, group string) (Slot, error) {
	pol, err := l.pols.lookup(group)
	if err != nil {
		return Slot{}, err
	}
	now := l.clock.Now()
	per := pol.PeriodAt(now)
	key := Key(group, per)
	if ok, seen, err := l.takeLeased(ctx, key, pol, now); err != nil || ok {
		if err == nil && l.pacer != nil { // a leased slot's token comes from this replica's bucket
			b, perr := l.pacer.take(group, Bucket{}, now)
			if perr != nil {
				l.mu.Lock()
				l.lease[key]++ // not handed out after all
				l.mu.Unlock()
				return Slot{}, perr
			}
			l.pacer.commit(group, b, false)
		}
		return Slot{Group: group, Period: per, seen: seen}, err
	}
	want, got, probe, seen := leaseSize(pol), 0, false, uint64(0)
	var paced Bucket
	prev := l.prevBucket(ctx, group, pol, per)
	err = l.update(ctx, key, func(r record) (record, error) {
		var err error
		orig := r
		got, probe = 0, false
		for got < want && !probe {
			next, p, rerr := r.reserve(group, pol, per, now)
			if rerr != nil {
				if got == 0 {
					r = next // the cap in force, adopted
				}
				err = rerr
				break
			}
			r, got, probe = next, got+1, p
		}
		seen = r.Answers
		if got > 0 {
			if r, paced, err = pace(l.pacer, group, r, prev, now); err != nil {
				return orig, err // no slot without its token: nothing written
			}
			return r, nil
		}
		return r, err
	})
	if err != nil {
		return Slot{}, err
	}
	if l.pacer != nil {
		l.pacer.commit(group, paced, true)
	}
	if got > 1 {
		l.mu.Lock()
		for k := range l.lease { // leases of earlier periods are spent
			if k != key && strings.HasPrefix(k, group+".") {
				delete(l.lease, k)
			}
		}
		l.lease[key] += got - 1
		l.mu.Unlock()
	}
	return Slot{Group: group, Period: per, Probe: probe, seen: seen}, nil
}

// takeLeased hands out a slot of the local lease when the shared record
// still allows a call: not blocked, and the slots used or in flight apart
// from this lease below the cap in force. Otherwise the lease is given back.
func (l *KV) takeLeased(ctx context.Context, key string, pol Policy, now time.Time) (bool, uint64, error) {
	l.mu.Lock()
	n := l.lease[key]
	l.mu.Unlock()
	if n == 0 {
		return false, 0, nil
	}
	r, err := l.get(ctx, key)
	if err != nil {
		return false, 0, err
	}
	r = r.adopt(pol)
	if !r.until().After(now) && r.Used-n < r.cap(pol) {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.lease[key] > 0 {
			l.lease[key]--
			return true, r.Answers, nil
		}
		return false, 0, nil
	}
	return false, 0, l.voidLease(ctx, key)
}

// voidLease gives the local lease of key back to the shared record.
func (l *KV) voidLease(ctx context.Context, key string) error {
	l.mu.Lock()
	n := l.lease[key]
	delete(l.lease, key)
	l.mu.Unlock()
	if n == 0 {
		return nil
	}
	return l.update(ctx, key, func(r record) (record, error) { return r.unlease(n), nil })
}

// Release implements Ledger. A slot of a group that leases goes back to
// the local pool (still counted as in flight in the shared record).
func (l *KV) Release(ctx context.Context, s Slot) error {
	key := Key(s.Group, s.Period)
	if pol, ok := l.pols.Get(s.Group); ok && leaseSize(pol) > 1 && s.Period.End.After(l.clock.Now()) {
		l.mu.Lock()
		l.lease[key]++
		l.mu.Unlock()
		return nil
	}
	return l.update(ctx, key, func(r record) (record, error) { return r.release(), nil })
}

// Settle implements Ledger: one compare-and-swap when the slot is of the
// current period (the answer and the headers together).
func (l *KV) Settle(ctx context.Context, s Slot, obs Observation, uncertain bool) error {
	pol, err := l.pols.lookup(s.Group)
	if err != nil {
		return err
	}
	now := l.clock.Now()
	if !samePeriod(pol.PeriodAt(now), s.Period) {
		key := Key(s.Group, s.Period)
		if err := l.update(ctx, key, func(r record) (record, error) { return r.settle(obs, uncertain, now), nil }); err != nil {
			return err
		}
		return l.Sync(ctx, s.Group, obs)
	}
	return l.sync(ctx, s.Group, pol, obs, func(r record) (record, bool) {
		return r.settle(obs, uncertain, now), r.Answers == s.seen
	})
}

// Sync implements Ledger.
func (l *KV) Sync(ctx context.Context, group string, obs Observation) error {
	pol, err := l.pols.lookup(group)
	if err != nil {
		return err
	}
	return l.sync(ctx, group, pol, obs, func(r record) (record, bool) { return r, false })
}

// sync applies pre and then Braze's headers to the current period (lowering
// the count only when pre says so), and a block to the periods up to
// Braze's reset.
func (l *KV) sync(ctx context.Context, group string, pol Policy, obs Observation, pre func(record) (record, bool)) error {
	l.pols.noteLimit(group, pol, obs)
	now := l.clock.Now()
	cur := pol.PeriodAt(now)
	if obs.Blocks() { // Braze says stop: leased slots are void
		if err := l.voidLease(ctx, Key(group, cur)); err != nil {
			return err
		}
	}
	for i, per := range syncPeriods(pol, cur, obs) {
		fn := func(r record) (record, error) { return r.block(obs, now), nil }
		if i == 0 {
			fn = func(r record) (record, error) {
				r, lower := pre(r)
				return r.adopt(pol).sync(obs, per, now, lower), nil
			}
		}
		if err := l.update(ctx, Key(group, per), fn); err != nil {
			return err
		}
	}
	return nil
}

// Usage implements Ledger.
func (l *KV) Usage(ctx context.Context, group string) (Usage, error) {
	pol, err := l.pols.lookup(group)
	if err != nil {
		return Usage{}, err
	}
	per := pol.PeriodAt(l.clock.Now())
	rec, err := l.get(ctx, Key(group, per))
	if err != nil {
		return Usage{}, err
	}
	return rec.usage(group, pol, per), nil
}
