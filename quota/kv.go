package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

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
	last  map[string]record // the record last read or written per key
	lease map[string]int    // ledger key → slots reserved in KV, not yet handed out
	pacer *Pacer            // set by PaceWith
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
	return &KV{kv: kv, pols: pols, clock: clock, last: map[string]record{}, lease: map[string]int{}}
}

// update applies fn to the record under key with compare-and-swap, retrying
// on conflict. fn's error aborts without writing.
func (l *KV) update(ctx context.Context, key string, fn func(record) (record, error)) error {
	for range maxCASTries {
		var (
			rec record
			rev uint64
		)
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
		}
		next, err := fn(rec)
		if err != nil {
			l.remember(key, rec)
			return err
		}
		if next == rec && rev != 0 {
			l.remember(key, rec)
			return nil
		}
		data, _ := json.Marshal(next)
		l.remember(key, next)
		if rev == 0 {
			_, err = l.kv.Create(ctx, key, data)
		} else {
			_, err = l.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
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

// Reserve implements Ledger.
func (l *KV) Reserve(ctx context.Context, group string) (Slot, error) {
	pol, err := l.pols.lookup(group)
	if err != nil {
		return Slot{}, err
	}
	now := l.clock.Now()
	per := pol.PeriodAt(now)
	key := Key(group, per)
	l.mu.Lock()
	if l.lease[key] > 0 {
		if l.pacer != nil { // a leased slot's token comes from this replica's bucket
			b, err := l.pacer.take(group, Bucket{}, now)
			if err != nil {
				l.mu.Unlock()
				return Slot{}, err
			}
			l.pacer.commit(group, b, false)
		}
		l.lease[key]--
		l.mu.Unlock()
		return Slot{Group: group, Period: per}, nil
	}
	l.mu.Unlock()
	want, got := leaseSize(pol), 0
	var paced Bucket
	prev := l.prevBucket(ctx, group, pol, per)
	err = l.update(ctx, key, func(r record) (record, error) {
		var err error
		got = 0
		for got < want {
			next, rerr := r.reserve(group, pol, per, now)
			if rerr != nil {
				err = rerr
				break
			}
			r, got = next, got+1
		}
		if got > 0 {
			r, paced, err = pace(l.pacer, group, r, prev, now)
			return r, err
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
	return Slot{Group: group, Period: per}, nil
}

// Release implements Ledger. A slot of a group that leases goes back to
// the local pool.
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

// Sync implements Ledger.
func (l *KV) Sync(ctx context.Context, group string, obs Observation) error {
	pol, err := l.pols.lookup(group)
	if err != nil {
		return err
	}
	l.pols.noteLimit(group, pol, obs)
	now := l.clock.Now()
	if obs.Blocks() { // Braze says stop: leased slots are void
		l.mu.Lock()
		delete(l.lease, Key(group, pol.PeriodAt(now)))
		l.mu.Unlock()
	}
	for i, per := range syncPeriods(pol, pol.PeriodAt(now), obs) {
		fn := func(r record) (record, error) { return r.block(obs, now), nil }
		if i == 0 {
			fn = func(r record) (record, error) { return r.sync(obs, now), nil }
		}
		key := Key(group, per)
		// Sync only raises counts and extends blocks: when it would not
		// change the record we last saw, it cannot change a newer one.
		if seen, ok := l.seen(key); ok {
			if next, _ := fn(seen); next == seen {
				continue
			}
		}
		if err := l.update(ctx, key, fn); err != nil {
			return err
		}
	}
	return nil
}

func (l *KV) remember(key string, r record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.last) > 4096 { // keys of old periods; cheap to forget
		clear(l.last)
	}
	l.last[key] = r
}

func (l *KV) seen(key string) (record, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.last[key]
	return r, ok
}

// Usage implements Ledger.
func (l *KV) Usage(ctx context.Context, group string) (Usage, error) {
	pol, err := l.pols.lookup(group)
	if err != nil {
		return Usage{}, err
	}
	per := pol.PeriodAt(l.clock.Now())
	key := Key(group, per)
	var rec record
	e, err := l.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return Usage{}, fmt.Errorf("ledger get %s: %w", key, err)
	default:
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return Usage{}, fmt.Errorf("ledger decode %s: %w", key, err)
		}
	}
	return rec.usage(group, pol, per), nil
}
