package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is a job kept on <prefix>.dead.<group> after running out of
// attempts.
type DeadLetter struct {
	Seq    uint64    `json:"seq"`
	Group  string    `json:"app_group"`
	Job    Job       `json:"job"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// ListDead returns every dead letter, oldest first. It reads the stream by
// subject and needs no consumer.
func ListDead(ctx context.Context, js jetstream.JetStream, s Subjects) ([]DeadLetter, error) {
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", Stream, err)
	}
	var out []DeadLetter
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(s.Dead("*")))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read dead letters: %w", err)
		}
		dl := DeadLetter{Seq: m.Sequence, At: m.Time, Reason: m.Header.Get(HeaderError)}
		dl.Group, _ = s.GroupOfReady(m.Subject)
		if err := json.Unmarshal(m.Data, &dl.Job); err != nil {
			dl.Reason = "undecodable: " + err.Error()
		}
		out = append(out, dl)
		seq = m.Sequence + 1
	}
}

// Replay sends a dead letter back through admission: its job record is
// cleared (so its id is not answered as a duplicate of the failure), the job
// is published to its group's job subject, and the dead letter is removed.
func Replay(ctx context.Context, js jetstream.JetStream, s Subjects, rec *Records, dl DeadLetter) error {
	if err := rec.DeleteJob(ctx, dl.Group, dl.Job.ID); err != nil {
		return err
	}
	data, err := json.Marshal(dl.Job)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: s.Jobs(dl.Group), Data: data, Header: nats.Header{HeaderMsgID: []string{fmt.Sprintf("%s.replay.%d", dl.Job.ID, dl.Seq)}}}
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("replay %s: %w", dl.Job.ID, err)
	}
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return err
	}
	if err := st.DeleteMsg(ctx, dl.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove dead letter %d: %w", dl.Seq, err)
	}
	return nil
}

// PauseLane pauses a group's lane consumer on the server until until: every
// replica stops taking its jobs, and the pause survives restarts.
func PauseLane(ctx context.Context, js jetstream.JetStream, s Subjects, nc *nats.Conn, group string, until time.Time) error {
	if _, err := js.PauseConsumer(ctx, Stream, LaneConsumer(group), until); err != nil {
		return fmt.Errorf("pause %s: %w", group, err)
	}
	return nc.Publish(s.Prefix+".ctl.wake."+group, nil)
}

// ResumeLane ends an operator pause and wakes the lane on every replica.
func ResumeLane(ctx context.Context, js jetstream.JetStream, s Subjects, nc *nats.Conn, group string) error {
	if _, err := js.ResumeConsumer(ctx, Stream, LaneConsumer(group)); err != nil {
		return fmt.Errorf("resume %s: %w", group, err)
	}
	if err := nc.Publish(s.Prefix+".ctl.wake."+group, nil); err != nil {
		return err
	}
	return nc.Flush()
}

// QuotaSubject is where workers answer status requests.
func (s Subjects) QuotaSubject() string { return s.Prefix + ".ctl.quota" }

// OpenRecords binds to the existing record buckets.
func OpenRecords(ctx context.Context, js jetstream.JetStream) (*Records, error) {
	jobs, err := js.KeyValue(ctx, JobsBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", JobsBucket, err)
	}
	pairs, err := js.KeyValue(ctx, PairsBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", PairsBucket, err)
	}
	return NewRecords(jobs, pairs), nil
}

// untilResumed is how far ahead a pause "until resumed" is set: JetStream's
// consumer pause needs an end, so it gets one nobody will wait for.
const untilResumed = 100 * 365 * 24 * time.Hour

// UntilResumed is the end PauseLane is given for a pause that lasts until
// ResumeLane.
func UntilResumed(now time.Time) time.Time { return now.Add(untilResumed) }

// PausedUntilResumed reports whether a pause ending at until (as seen at
// now) is one that lasts until resumed.
func PausedUntilResumed(until, now time.Time) bool { return until.Sub(now) > untilResumed/2 }
