package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

// EnsureStreams is idempotent and sets the stream's own consumer limit:
// nats-server otherwise caps a stream at 1,000 consumers, and sendid needs
// one per app group plus admission.
func TestEnsureStreams(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.Connect()
	ctx := context.Background()
	set := queue.StreamSettings{Subjects: queue.Subjects{Prefix: "sendid"}, Replicas: 1, DuplicateWindow: time.Minute, Results: true, ResultsMaxAge: time.Hour}
	for range 2 {
		if err := queue.EnsureStreams(ctx, js, set); err != nil {
			t.Fatal(err)
		}
	}
	st, err := js.Stream(ctx, queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxConsumers != queue.MaxConsumers || cfg.MaxConsumers <= 1001 {
		t.Fatalf("MaxConsumers %d", cfg.MaxConsumers)
	}
	want := []string{"sendid.jobs", "sendid.jobs.*", "sendid.ready.*", "sendid.dead.*"}
	if len(cfg.Subjects) != len(want) {
		t.Fatalf("subjects %v", cfg.Subjects)
	}
	for i := range want {
		if cfg.Subjects[i] != want[i] {
			t.Fatalf("subjects %v", cfg.Subjects)
		}
	}
	if _, err := js.Stream(ctx, queue.ResultsStream); err != nil {
		t.Fatal(err)
	}
}
