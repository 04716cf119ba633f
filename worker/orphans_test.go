package worker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sendid/sendid/worker"
)

// A replica that does not serve a group refuses to fail its jobs while
// another replica says it serves it (a rolling update adding the group).
func TestOrphansFailRefusedWhileAnotherReplicaServes(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	other, err := k.nc.Subscribe("sendid.ctl.serves.eu", func(m *nats.Msg) { _ = m.Respond([]byte("replica-b")) })
	if err != nil {
		t.Fatal(err)
	}
	defer other.Unsubscribe()
	ask := func(group string) worker.OrphansReply {
		body, _ := json.Marshal(worker.OrphansFailRequest{Group: group})
		m, err := k.nc.Request(worker.OrphansFailSubject(k.subj), body, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r worker.OrphansReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := ask("eu"); !strings.Contains(r.Error, "configured on another replica (replica-b)") {
		t.Fatalf("eu: %+v", r)
	}
	if r := ask("default"); !strings.Contains(r.Error, "is configured") {
		t.Fatalf("default: %+v", r)
	}
	if r := ask("gone"); r.Error != "" || r.Failed != 0 {
		t.Fatalf("a group nobody serves, with no jobs: %+v", r)
	}
}
