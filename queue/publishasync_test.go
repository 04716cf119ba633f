package queue_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

// ResultAsync stores results on <prefix>.results.> in the results stream
// (Wait returns once stored, with their Nats-Msg-Id), sends others as core
// publishes, shows each to the observer only on Wait, and keeps the order
// of the calls.
func TestResultAsync(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := s.Connect()
	ctx := context.Background()
	subj := queue.Subjects{Prefix: "sendid"}
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: time.Minute, Results: true, ResultsMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	core := make(chan *nats.Msg, 10)
	sub, err := nc.ChanSubscribe("app.replies", core)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	p := queue.NewPublisher(nc, js, subj, true)
	var seen []string
	p.OnResult(func(r queue.Result) { seen = append(seen, r.ID) })

	var pending []*queue.PendingResult
	for _, r := range []struct{ subject, id string }{{"sendid.results.g", "d1"}, {"app.replies", "c1"}, {"sendid.results.g", "d2"}} {
		pr, err := p.ResultAsync(r.subject, queue.Result{ID: r.id, AppGroup: "g", Status: queue.StatusDeferred})
		if err != nil {
			t.Fatal(err)
		}
		pending = append(pending, pr)
	}
	if len(seen) != 0 {
		t.Fatalf("observer saw %v before Wait", seen)
	}
	for _, pr := range pending {
		if err := pr.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 3 || seen[0] != "d1" || seen[1] != "c1" || seen[2] != "d2" {
		t.Fatalf("observer saw %v, want d1 c1 d2", seen)
	}
	st, err := js.Stream(ctx, queue.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq, id := range map[uint64]string{1: "d1", 2: "d2"} {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("results stream message %d: %v", seq, err)
		}
		var r queue.Result
		if err := json.Unmarshal(m.Data, &r); err != nil || r.ID != id {
			t.Fatalf("message %d: %s (%v), want %s", seq, m.Data, err, id)
		}
		if got := m.Header.Get(queue.HeaderMsgID); got != "g."+id+".deferred" {
			t.Fatalf("message %d Nats-Msg-Id %q", seq, got)
		}
	}
	select {
	case m := <-core:
		var r queue.Result
		if err := json.Unmarshal(m.Data, &r); err != nil || r.ID != "c1" {
			t.Fatalf("core result %s (%v)", m.Data, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no core result")
	}
}

// A result the results stream refuses is reported by Wait, and the
// observer does not see it.
func TestResultAsyncReportsRefusal(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := s.Connect()
	subj := queue.Subjects{Prefix: "sendid"}
	// No results stream: a JetStream publish to sendid.results.g has no
	// responder.
	p := queue.NewPublisher(nc, js, subj, true)
	p.OnResult(func(r queue.Result) { t.Errorf("observer saw %s", r.ID) })
	pr, err := p.ResultAsync("sendid.results.g", queue.Result{ID: "x", AppGroup: "g", Status: queue.StatusDeferred})
	if err != nil {
		return // refused at once: also reported
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pr.Wait(ctx); err == nil {
		t.Fatal("Wait: nil error for a result no stream stored")
	}
}
