package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
)

// Orphaned jobs: a group removed from the configuration leaves the jobs
// already admitted to its ready subject with no lane to call them and no
// one to answer them. The worker looks for them at start and after every
// reload, logs them and exposes sendid_orphaned_jobs{app_group}; an
// operator then either configures the group again (its lane picks them up,
// in order) or answers them failed / unknown_app_group with
// `sendidctl orphans fail <group>`, which asks a worker over
// <prefix>.ctl.orphans.fail (the worker refuses for a configured group).

// OrphansFailRequest asks a worker to fail one group's orphaned jobs.
type OrphansFailRequest struct {
	Group string `json:"app_group"`
}

// OrphansReply is a worker's answer on the orphan control subjects.
type OrphansReply struct {
	Orphans []queue.Orphan `json:"orphans"`
	Failed  int            `json:"failed,omitempty"` // jobs answered by orphans fail
	Error   string         `json:"error,omitempty"`
}

// OrphansSubject lists orphaned jobs; OrphansFailSubject fails a group's.
func OrphansSubject(s queue.Subjects) string     { return s.Prefix + ".ctl.orphans" }
func OrphansFailSubject(s queue.Subjects) string { return s.Prefix + ".ctl.orphans.fail" }

// orphanBoard remembers the last scan, to keep the gauge's label set exact.
type orphanBoard struct {
	mu   sync.Mutex // serialises scans and fails
	last map[string]int
}

// scanOrphans finds orphaned jobs, logs them and sets the gauge.
func (w *Worker) scanOrphans(ctx context.Context) ([]queue.Orphan, error) {
	w.orphans.mu.Lock()
	defer w.orphans.mu.Unlock()
	return w.scanOrphansLocked(ctx)
}

func (w *Worker) scanOrphansLocked(ctx context.Context) ([]queue.Orphan, error) {
	found, err := queue.FindOrphans(ctx, w.o.JS, w.o.Subjects, func(g string) bool { return w.lane(g) != nil })
	if err != nil {
		return nil, fmt.Errorf("orphaned jobs: %w", err)
	}
	now := map[string]int{}
	for _, o := range found {
		now[o.Group] = o.Jobs
		w.o.Metrics.Orphaned.WithLabelValues(o.Group).Set(float64(o.Jobs))
		if w.orphans.last[o.Group] != o.Jobs {
			w.log.Warn("admitted jobs wait for an app group that is not configured: configure it again, or answer them with `sendidctl orphans fail <group>`",
				zap.String("app_group", o.Group), zap.Int("jobs", o.Jobs))
		}
	}
	for g := range w.orphans.last {
		if _, ok := now[g]; !ok {
			w.o.Metrics.Orphaned.DeleteLabelValues(g)
		}
	}
	w.orphans.last = now
	return found, nil
}

// scanOrphansLogged is scanOrphans for start and reload: a failure is
// logged, and the next reload or request looks again.
func (w *Worker) scanOrphansLogged(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := w.scanOrphans(ctx); err != nil && ctx.Err() == nil {
		w.log.Warn("orphaned jobs not checked", zap.Error(err))
	}
}

// failOrphans answers a group's orphaned jobs, unless the group is
// configured here.
func (w *Worker) failOrphans(ctx context.Context, group string) OrphansReply {
	if w.lane(group) != nil {
		return OrphansReply{Error: fmt.Sprintf("app group %q is configured: its lane serves these jobs", group)}
	}
	// Another replica (a rolling update adding the group) may serve it.
	if m, err := w.o.NC.Request(servesSubject(w.o.Subjects, group), nil, time.Second); err == nil {
		return OrphansReply{Error: fmt.Sprintf("app group %q is configured on another replica (%s): its lane serves these jobs", group, m.Data)}
	}
	w.orphans.mu.Lock()
	defer w.orphans.mu.Unlock()
	n, err := queue.FailOrphans(ctx, w.o.JS, w.o.Subjects, w.o.Publisher, group, w.o.Clock.Now)
	if n > 0 {
		w.o.Metrics.Jobs.WithLabelValues(group, queue.StatusFailed).Add(float64(n))
		w.log.Warn("orphaned jobs answered failed / unknown_app_group", zap.String("app_group", group), zap.Int("jobs", n))
	}
	r := OrphansReply{Failed: n}
	if err != nil {
		r.Error = err.Error()
	}
	found, serr := w.scanOrphansLocked(ctx)
	r.Orphans = found
	if serr != nil && r.Error == "" {
		r.Error = serr.Error()
	}
	return r
}

// serveOrphans answers the orphan control subjects (one replica of the
// queue group answers each request) until the returned stop is called.
func (w *Worker) serveOrphans(ctx context.Context) (func(), error) {
	s := w.o.Subjects
	reply := func(m *nats.Msg, r OrphansReply) {
		body, _ := json.Marshal(r)
		if err := m.Respond(body); err != nil {
			w.log.Debug("control reply failed", zap.Error(err))
		}
	}
	list, err := w.o.NC.QueueSubscribe(OrphansSubject(s), "sendid-ctl", func(m *nats.Msg) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		found, err := w.scanOrphans(cctx)
		r := OrphansReply{Orphans: found}
		if err != nil {
			r.Error = err.Error()
		}
		reply(m, r)
	})
	if err != nil {
		return nil, err
	}
	fail, err := w.o.NC.QueueSubscribe(OrphansFailSubject(s), "sendid-ctl", func(m *nats.Msg) {
		var req OrphansFailRequest
		if err := json.Unmarshal(m.Data, &req); err != nil || req.Group == "" {
			reply(m, OrphansReply{Error: "request must be {\"app_group\": \"<group>\"}"})
			return
		}
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		reply(m, w.failOrphans(cctx, req.Group))
	})
	if err != nil {
		_ = list.Unsubscribe()
		return nil, err
	}
	// Every replica answers for the groups it serves (and is silent for
	// the others), so that no replica fails jobs another one would run.
	serves, err := w.o.NC.Subscribe(servesSubject(s, "*"), func(m *nats.Msg) {
		g := m.Subject[len(servesSubject(s, "")):]
		if w.lane(g) != nil {
			name := w.o.NC.Opts.Name
			if name == "" {
				name = "unnamed"
			}
			if err := m.Respond([]byte(name)); err != nil {
				w.log.Debug("control reply failed", zap.Error(err))
			}
		}
	})
	if err != nil {
		_ = list.Unsubscribe()
		_ = fail.Unsubscribe()
		return nil, err
	}
	return func() { _ = list.Unsubscribe(); _ = fail.Unsubscribe(); _ = serves.Unsubscribe() }, nil
}

// servesSubject is where replicas say whether they serve group.
func servesSubject(s queue.Subjects, group string) string { return s.Prefix + ".ctl.serves." + group }

// runContext is Run's context while the worker runs, else nil.
func (w *Worker) runContext() context.Context {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if !w.running {
		return nil
	}
	return w.runCtx
}

// Orphaned lists, from the last scan, the groups that are no longer
// configured but still have admitted jobs waiting.
func (w *Worker) Orphaned() []queue.Orphan {
	w.orphans.mu.Lock()
	defer w.orphans.mu.Unlock()
	out := make([]queue.Orphan, 0, len(w.orphans.last))
	for g, n := range w.orphans.last {
		out = append(out, queue.Orphan{Group: g, Jobs: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}
