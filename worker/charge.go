package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/sendid/sendid/quota"
)

// minPause is the shortest pause a lane takes when it must wait at all: a
// pause whose end is already past, an exhausted-until in the past or a
// ledger that keeps refusing costs at most one ledger operation per
// minPause, never a busy loop.
const minPause = time.Second

// settle tells the ledger what became of the call made with slot, the one
// place that maps an outcome to a charge: a call Braze did not charge (it
// never left, a 429, or a 401/403/404 — a request that fails
// authentication is charged to no workspace) gives its slot back; a call
// that may or may not have been charged (5xx, timeout, shutdown cut) stays
// counted, marked uncertain; any other answer was charged. Braze's headers
// then correct the period, down as well as up.
func (e *executor) settle(ctx context.Context, slot quota.Slot, o outcome) {
	l := e.w.o.Ledger
	var err error
	switch {
	case o.notSent || o.kind == outRateLimited || o.kind == outConfigFault:
		if err = l.Release(ctx, slot); err == nil {
			err = l.Sync(ctx, e.group, o.obs)
		}
	default:
		err = l.Settle(ctx, slot, o.obs, o.kind == outRetry || o.kind == outInterrupted)
	}
	if err != nil {
		e.w.log.Warn("ledger not settled", zap.String("app_group", e.group), zap.Error(err))
	}
	if slot.Probe {
		e.w.log.Info("probe call settled uncertain charges", zap.String("app_group", e.group), zap.Stringer("outcome", o.kind))
	}
}
