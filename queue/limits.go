package queue

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerLimit is the most consumers the account lets one stream have, read
// from its JetStream limits (the tier of the given replica count when the
// account has tiers). 0 means the account sets no limit.
//
// nats-server applies an account's max_consumers to each stream: a stream
// may not ask for more, and no stream may hold more.
func ConsumerLimit(ctx context.Context, js jetstream.JetStream, replicas int) (int, error) {
	info, err := js.AccountInfo(ctx)
	if err != nil {
		return 0, fmt.Errorf("account info: %w", err)
	}
	limit := info.Limits.MaxConsumers
	if t, ok := info.Tiers["R"+strconv.Itoa(max(replicas, 1))]; ok && t.Limits.MaxConsumers > 0 {
		limit = t.Limits.MaxConsumers
	}
	return max(limit, 0), nil
}

// streamConsumerLimit is the SENDID stream's own consumer limit for an
// account limit (0: none). Without an account limit the stream still sets a
// high one of its own: nats-server applies a default of 1,000 consumers
// per stream unless the stream sets a positive limit (-1 does not opt out).
func streamConsumerLimit(account int) int {
	if account > 0 {
		return account
	}
	return MaxConsumers
}

// GroupLimitError says that the configured app groups cannot all have a
// lane consumer in this account: each needs one, and admission one more.
type GroupLimitError struct {
	Groups  int // app groups configured
	Allowed int // consumers the account allows the stream
}

func (e *GroupLimitError) Error() string {
	return fmt.Sprintf("%d app groups configured need %d consumers on stream %s (one per group plus admission), but the account's JetStream limit allows %d consumers per stream (max_consumers): remove groups or raise the limit",
		e.Groups, e.Groups+1, Stream, e.Allowed)
}

// ErrGroupLimit matches every *GroupLimitError with errors.Is.
var ErrGroupLimit = errors.New("app groups exceed the account's consumer limit")

// Is makes errors.Is(err, ErrGroupLimit) true.
func (e *GroupLimitError) Is(target error) bool { return target == ErrGroupLimit }

// CheckGroupsFit returns a *GroupLimitError when groups lanes plus
// admission exceed the account's consumer limit (0: no limit).
func CheckGroupsFit(groups, limit int) error {
	if limit > 0 && groups+1 > limit {
		return &GroupLimitError{Groups: groups, Allowed: limit}
	}
	return nil
}
