package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// cached is a ledger record as this KV last read or wrote it, with its
// revision.
type cached struct {
	rec record
	rev uint64
}

// maxCached bounds the remembered records (one per group and period in
// use); past it they are all forgotten and read again.
const maxCached = 4096

func (l *KV) remember(key string, rec record, rev uint64) {
	l.lastMu.Lock()
	defer l.lastMu.Unlock()
	if len(l.last) >= maxCached {
		clear(l.last)
	}
	l.last[key] = cached{rec, rev}
}

func (l *KV) forget(key string) {
	l.lastMu.Lock()
	defer l.lastMu.Unlock()
	delete(l.last, key)
}

// updateLast tries update's change on the record as last seen, with one
// compare-and-swap against its revision and no read: the swap succeeds only
// if the record is still exactly what fn saw, as if it had just been read.
// Only a change fn makes without an error is tried (a refusal or a no-op
// decided on a stale record could be wrong). done is false when update
// must read the record: nothing remembered, nothing to write, or another
// writer changed it meanwhile.
func (l *KV) updateLast(ctx context.Context, key string, fn func(record) (record, error)) (done bool, err error) {
	l.lastMu.Lock()
	c, ok := l.last[key]
	l.lastMu.Unlock()
	if !ok || c.rev == 0 {
		return false, nil
	}
	next, fnErr := fn(c.rec)
	if fnErr != nil || next == c.rec {
		return false, nil
	}
	data, err := json.Marshal(next)
	if err != nil {
		return true, fmt.Errorf("ledger encode %s: %w", key, err)
	}
	l.trips.Add(1)
	rev, err := l.kv.Update(ctx, key, data, c.rev)
	switch {
	case err == nil:
		l.remember(key, next, rev)
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound):
		l.forget(key)
		return false, nil
	}
	l.forget(key)
	return true, fmt.Errorf("ledger write %s: %w", key, err)
}

// RoundTrips is how many requests this ledger has made to its bucket, each
// a wait for the server's answer (sendid-bench counts them per job).
func (l *KV) RoundTrips() uint64 { return l.trips.Load() }
