package worker

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

func TestExplainLimit(t *testing.T) {
	t.Parallel()
	w := &Worker{lanes: map[string]*lane{"a": nil, "b": nil, "c": nil}}
	err := w.explainLimit(fmt.Errorf("consumer lane_c: %w", jetstream.ErrMaximumConsumersLimit))
	if !errors.Is(err, jetstream.ErrMaximumConsumersLimit) || !strings.Contains(err.Error(), "3 app groups configured need 4 consumers") {
		t.Fatalf("got %v", err)
	}
	other := errors.New("timeout")
	if got := w.explainLimit(other); got != other {
		t.Fatalf("other errors change: %v", got)
	}
}
