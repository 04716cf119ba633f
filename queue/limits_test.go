package queue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

// In an account limited to 50 consumers per stream, the stream asks for
// 50 (not 100,000, which the server refuses), 10 groups fit and 80 do not.
func TestEnsureStreamsRespectsAccountLimits(t *testing.T) {
	t.Parallel()
	_, url := natstest.StartLimited(t, 50)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, err := queue.ConsumerLimit(ctx, js, 1); err != nil || n != 50 {
		t.Fatalf("ConsumerLimit = %d, %v", n, err)
	}
	set := queue.StreamSettings{Subjects: queue.Subjects{Prefix: "sendid"}, Replicas: 1, DuplicateWindow: time.Minute, ResultsMaxAge: time.Hour}

	set.Groups = 80
	err = queue.EnsureStreams(ctx, js, set)
	var gl *queue.GroupLimitError
	if !errors.As(err, &gl) || gl.Groups != 80 || gl.Allowed != 50 || !errors.Is(err, queue.ErrGroupLimit) {
		t.Fatalf("80 groups: %v", err)
	}
	for _, want := range []string{"80 app groups", "81 consumers", "allows 50"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := js.Stream(ctx, queue.Stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream created although the groups cannot fit: %v", err)
	}

	set.Groups = 10
	if err := queue.EnsureStreams(ctx, js, set); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxConsumers; got != 50 {
		t.Fatalf("stream MaxConsumers %d, want the account's 50", got)
	}
	for i := range 10 {
		if _, err := queue.EnsureLane(ctx, js, set.Subjects, "g"+string(rune('a'+i)), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := queue.EnsureAdmission(ctx, js, set.Subjects, 0); err != nil {
		t.Fatal(err)
	}
}

func TestCheckGroupsFit(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		groups, limit int
		ok            bool
	}{{10, 0, true}, {5000, 0, true}, {49, 50, true}, {50, 50, false}, {80, 50, false}} {
		if err := queue.CheckGroupsFit(c.groups, c.limit); (err == nil) != c.ok {
			t.Errorf("CheckGroupsFit(%d, %d) = %v", c.groups, c.limit, err)
		}
	}
}
