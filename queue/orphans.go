package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Orphan is an app group that has admitted jobs waiting on its ready
// subject but is not configured any more: no lane will ever call them.
type Orphan struct {
	Group string `json:"app_group"`
	Jobs  int    `json:"jobs"`
}

// FindOrphans lists the groups with messages on their ready subject for
// which configured is false, by group name. It reads the stream's
// per-subject counts and needs no consumer.
func FindOrphans(ctx context.Context, js jetstream.JetStream, s Subjects, configured func(group string) bool) ([]Orphan, error) {
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", Stream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(s.Ready("*")))
	if err != nil {
		return nil, fmt.Errorf("stream %s subjects: %w", Stream, err)
	}
	var out []Orphan
	for subject, n := range info.State.Subjects {
		g, err := s.GroupOfReady(subject)
		if err != nil || n == 0 || configured(g) {
			continue
		}
		out = append(out, Orphan{Group: g, Jobs: int(n)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out, nil
}

// FailOrphans answers every job waiting on group's ready subject with
// failed / unknown_app_group on its reply subject, then removes it from the
// stream. A job is removed only after its answer was published. Call it
// only for a group no worker serves: it reads the stream by subject and
// does not coordinate with a lane. It returns how many jobs were answered.
func FailOrphans(ctx context.Context, js jetstream.JetStream, s Subjects, pub *Publisher, group string, now func() time.Time) (int, error) {
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", Stream, err)
	}
	answered := 0
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(s.Ready(group)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return answered, nil
		}
		if err != nil {
			return answered, fmt.Errorf("read %s: %w", s.Ready(group), err)
		}
		seq = m.Sequence + 1
		var job Job
		if err := json.Unmarshal(m.Data, &job); err == nil && job.ID != "" {
			dest := job.ReplyTo // admission stored the checked destination here
			if dest == "" {
				dest = s.Results(group)
			}
			r := Result{ID: job.ID, AppGroup: group, CampaignID: job.CampaignID, SendID: job.SendID, Meta: job.Meta,
				Status: StatusFailed, At: now().UTC(),
				Error: &ResultError{Code: CodeUnknownAppGroup, Message: fmt.Sprintf("app group %q is no longer configured", group)}}
			if err := pub.Result(ctx, dest, r); err != nil {
				return answered, fmt.Errorf("answer job %s: %w", job.ID, err)
			}
			answered++
		}
		// Not a job (only admission writes here): nothing to answer.
		if err := st.DeleteMsg(ctx, m.Sequence); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return answered, fmt.Errorf("remove job at %d: %w", m.Sequence, err)
		}
	}
}
