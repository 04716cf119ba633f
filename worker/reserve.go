package worker

import (
	"context"
	"errors"

	"github.com/sendid/sendid/quota"
)

// reserve takes the group's pacer token together with a ledger slot (the
// ledger paces: see sharePacer), waiting first for the token as this
// replica knows the bucket. A bucket another replica emptied
// (*quota.Paced) is waited out here; an exhausted ledger (*quota.Exhausted),
// another error or ctx's end is returned. The slot counts as held for
// forecasts.
func (e *executor) reserve(ctx context.Context) (quota.Slot, error) {
	for {
		slot, err := e.reserveOnce(ctx)
		var paced *quota.Paced
		if !errors.As(err, &paced) {
			return slot, err
		}
		if !e.w.sleep(ctx, paced.Until.Sub(e.w.o.Clock.Now())) {
			return quota.Slot{}, ctx.Err()
		}
	}
}

// reserveOnce is one try of reserve: a bucket another replica emptied is
// returned as *quota.Paced, not waited out.
func (e *executor) reserveOnce(ctx context.Context) (quota.Slot, error) {
	w := e.w
	if err := w.o.Pacer.Wait(ctx, e.group); err != nil {
		return quota.Slot{}, err
	}
	var slot quota.Slot
	err := e.fc.hold(func() (err error) {
		slot, err = w.o.Ledger.Reserve(ctx, e.group)
		return err
	})
	return slot, err
}
