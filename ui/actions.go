package ui

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/queue"
)

// Operations are what the page reads besides the status and what its
// buttons do. NATSOperations implements them with the same queue functions
// sendidctl uses.
type Operations interface {
	DeadLetters(ctx context.Context, group string) ([]queue.DeadLetter, error)
	Pause(ctx context.Context, group string, until time.Time) error
	Resume(ctx context.Context, group string) error
	// Replay sends the group's dead letter at stream sequence seq back
	// through admission.
	Replay(ctx context.Context, group string, seq uint64) error
	// ReplayAll replays every dead letter of the group and returns how many.
	ReplayAll(ctx context.Context, group string) (int, error)
}

// NATSOperations are Operations over a NATS connection.
type NATSOperations struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Subjects queue.Subjects
}

var _ Operations = (*NATSOperations)(nil)

// errNoDeadLetter is a replay of a dead letter that is not there (any more).
var errNoDeadLetter = errors.New("no such dead letter")

// DeadLetters implements Operations.
func (o *NATSOperations) DeadLetters(ctx context.Context, group string) ([]queue.DeadLetter, error) {
	all, err := queue.ListDead(ctx, o.JS, o.Subjects)
	if err != nil {
		return nil, err
	}
	out := []queue.DeadLetter{}
	for _, d := range all {
		if d.Group == group {
			out = append(out, d)
		}
	}
	return out, nil
}

// Pause implements Operations.
func (o *NATSOperations) Pause(ctx context.Context, group string, until time.Time) error {
	return queue.PauseLane(ctx, o.JS, o.Subjects, o.NC, group, until)
}

// Resume implements Operations.
func (o *NATSOperations) Resume(ctx context.Context, group string) error {
	return queue.ResumeLane(ctx, o.JS, o.Subjects, o.NC, group)
}

// Replay implements Operations.
func (o *NATSOperations) Replay(ctx context.Context, group string, seq uint64) error {
	dead, err := o.DeadLetters(ctx, group)
	if err != nil {
		return err
	}
	for _, d := range dead {
		if d.Seq == seq {
			rec, err := queue.OpenRecords(ctx, o.JS)
			if err != nil {
				return err
			}
			return queue.Replay(ctx, o.JS, o.Subjects, rec, d)
		}
	}
	return fmt.Errorf("replay %s/%d: %w", group, seq, errNoDeadLetter)
}

// ReplayAll implements Operations.
func (o *NATSOperations) ReplayAll(ctx context.Context, group string) (int, error) {
	dead, err := o.DeadLetters(ctx, group)
	if err != nil {
		return 0, err
	}
	rec, err := queue.OpenRecords(ctx, o.JS)
	if err != nil {
		return 0, err
	}
	for i, d := range dead {
		if err := queue.Replay(ctx, o.JS, o.Subjects, rec, d); err != nil {
			return i, err
		}
	}
	return len(dead), nil
}
