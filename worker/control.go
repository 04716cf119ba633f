package worker

import (
	"context"
	"encoding/json"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// GroupStatus is what operators see of an app group (sendidctl quota).
type GroupStatus struct {
	Group        string    `json:"app_group"`
	Cap          int       `json:"cap"`
	Used         int       `json:"used"`
	Remaining    int       `json:"remaining"`
	NextReset    time.Time `json:"next_reset"`
	Backlog      int       `json:"backlog"`
	Paused       bool      `json:"paused"`
	PauseReason  string    `json:"pause_reason,omitempty"`
	PausedUntil  time.Time `json:"paused_until,omitzero"`
	BlockedUntil time.Time `json:"blocked_until,omitzero"` // Braze's 429/Remaining 0
	DrainETA     time.Time `json:"drain_eta,omitzero"`     // when the last job of the backlog is forecast to run
	// PacingInterval is the pacer's spacing between calls (period / cap).
	PacingInterval string `json:"pacing_interval"`
	// Timezone is where the group's periods start (the next reset's local time).
	Timezone string `json:"timezone"`
	// LastFault is Braze's message with the last configuration fault, while
	// the lane is paused for one.
	LastFault string `json:"last_fault,omitempty"`
	// InDoubt counts the group's jobs found with a call in doubt since this
	// replica started (sendid_jobs_in_doubt_total).
	InDoubt int `json:"in_doubt"`
}

// Status reports every group's quota, backlog, pause state and drain ETA.
func (w *Worker) Status(ctx context.Context) ([]GroupStatus, error) {
	return w.StatusOf(ctx, w.Groups())
}

// StatusOf is Status for the named groups only (unknown names are skipped),
// for pages that show a few groups of many.
func (w *Worker) StatusOf(ctx context.Context, groups []string) ([]GroupStatus, error) {
	out := []GroupStatus{}
	for _, g := range groups {
		l := w.lane(g)
		if l == nil || l.cons == nil {
			continue
		}
		u, err := w.o.Ledger.Usage(ctx, g)
		if err != nil {
			return nil, err
		}
		info, err := l.cons.Info(ctx)
		if err != nil {
			return nil, err
		}
		st := GroupStatus{Group: g, Cap: u.Cap, Used: u.Used, Remaining: u.Remaining, NextReset: u.PeriodEnd.UTC(),
			Backlog: int(info.NumPending) + info.NumAckPending, BlockedUntil: u.ExhaustedUntil,
			InDoubt: int(counterValue(w.o.Metrics.InDoubt.WithLabelValues(g)))}
		// What operators read here is what /metrics exports next (Usage went
		// through the gauge ledger; the backlog is recorded the same way).
		w.gauges.update(g, func(gg *groupGauge) {
			gg.backlog, gg.haveBacklog = st.Backlog, true
			gg.opPaused, gg.opUntil = info.Paused, w.o.Clock.Now().Add(info.PauseRemaining)
		})
		pol, _ := w.o.Policies.Get(g)
		st.PacingInterval = pol.Interval().String()
		st.Timezone = pol.Location.String()
		if pol.Location == nil {
			st.Timezone = "UTC"
		}
		if until, reason := l.pauseState(); reason != "" {
			if reason == "quota" && u.Remaining == 0 {
				// The lane looks again every few minutes; the pause
				// really lasts until the reset (or Braze's block).
				until = laterOf(u.PeriodEnd, u.ExhaustedUntil)
			}
			st.Paused, st.PauseReason, st.PausedUntil = true, reason, until
			if f := l.exec.lastFault.Load(); f != nil && reason == "config_fault" {
				st.LastFault = *f
			}
		}
		if info.Paused {
			st.Paused, st.PauseReason, st.PausedUntil = true, "operator", w.o.Clock.Now().Add(info.PauseRemaining).UTC()
		}
		if st.Backlog > 0 {
			st.DrainETA = quota.Forecast(w.o.Clock.Now(), pol, withPause(u, info.Paused, st.PausedUntil), w.o.Pacer.SharedTokens(g, u), st.Backlog-1).UTC()
		}
		out = append(out, st)
	}
	return out, nil
}

// withPause folds an operator pause into the usage a forecast reads.
func withPause(u quota.Usage, paused bool, until time.Time) quota.Usage {
	if paused && until.After(u.ExhaustedUntil) {
		u.ExhaustedUntil = until
	}
	return u
}

// Control subjects (under the prefix): <prefix>.ctl.quota answers Status as
// JSON (one replica of the queue group answers); <prefix>.ctl.wake.<group>
// wakes that group's lane on every replica (sent after pause and resume).
func ctlQuota(s queue.Subjects) string { return s.QuotaSubject() }

// serveControl subscribes the control subjects until ctx ends.
func (w *Worker) serveControl(ctx context.Context) (func(), error) {
	s := w.o.Subjects
	q, err := w.o.NC.QueueSubscribe(ctlQuota(s), "sendid-ctl", func(m *nats.Msg) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := w.Status(cctx)
		var body []byte
		if err != nil {
			body, _ = json.Marshal(map[string]string{"error": err.Error()})
		} else {
			body, _ = json.Marshal(st)
		}
		if err := m.Respond(body); err != nil {
			w.log.Debug("control reply failed", zap.Error(err))
		}
	})
	if err != nil {
		return nil, err
	}
	wake, err := w.o.NC.Subscribe(s.Prefix+".ctl.wake.*", func(m *nats.Msg) {
		g := m.Subject[len(s.Prefix+".ctl.wake."):]
		if l := w.lane(g); l != nil {
			l.resume()
		}
	})
	if err != nil {
		_ = q.Unsubscribe()
		return nil, err
	}
	return func() { _ = q.Unsubscribe(); _ = wake.Unsubscribe() }, nil
}

// counterValue reads a counter's current value.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
