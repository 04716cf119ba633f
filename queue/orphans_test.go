package queue_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

func TestFindAndFailOrphans(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := s.Connect()
	ctx := context.Background()
	subj := queue.Subjects{Prefix: "sendid"}
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: time.Minute, ResultsMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync("test.>")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ subject, body string }{
		{"sendid.ready.gone", `{"id":"a","campaign_id":"c","reply_to":"test.a","meta":{"k":1}}`},
		{"sendid.ready.kept", `{"id":"k","campaign_id":"c","reply_to":"test.k"}`},
		{"sendid.ready.gone", `not a job`},
		{"sendid.ready.gone", `{"id":"b","campaign_id":"c","send_id":"s","reply_to":"test.b"}`},
	} {
		if _, err := js.Publish(ctx, m.subject, []byte(m.body)); err != nil {
			t.Fatal(err)
		}
	}
	configured := func(g string) bool { return g == "kept" }
	found, err := queue.FindOrphans(ctx, js, subj, configured)
	if err != nil || len(found) != 1 || found[0] != (queue.Orphan{Group: "gone", Jobs: 3}) {
		t.Fatalf("FindOrphans = %+v, %v", found, err)
	}
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	n, err := queue.FailOrphans(ctx, js, subj, queue.NewPublisher(nc, js, subj, false), "gone", func() time.Time { return at })
	if err != nil || n != 2 {
		t.Fatalf("FailOrphans = %d, %v", n, err)
	}
	for _, want := range []string{"a", "b"} {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r queue.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		if r.ID != want || m.Subject != "test."+want || r.Status != queue.StatusFailed || r.Error == nil ||
			r.Error.Code != queue.CodeUnknownAppGroup || r.AppGroup != "gone" || !r.At.Equal(at) {
			t.Fatalf("result on %s: %+v", m.Subject, r)
		}
		if want == "a" && string(r.Meta) != `{"k":1}` {
			t.Fatalf("meta %s", r.Meta)
		}
	}
	if found, err := queue.FindOrphans(ctx, js, subj, configured); err != nil || len(found) != 0 {
		t.Fatalf("after FailOrphans: %+v, %v", found, err)
	}
	// The configured group's job is untouched.
	if found, err := queue.FindOrphans(ctx, js, subj, func(string) bool { return false }); err != nil || len(found) != 1 || found[0].Group != "kept" {
		t.Fatalf("kept: %+v, %v", found, err)
	}
}
