package worker_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// Regression test (found in review; fixed): ARCHITECTURE (goals): never lose a job, tell every publisher what
// happened. Admission publishes the admitted job to sendid.ready.<group>
// with Nats-Msg-Id "<job id>@<stream seq>" into the same SENDID stream that
// stores upstream jobs with the publisher's own Nats-Msg-Id. A hostile
// publisher (here in group a) that publishes any job with header
// Nats-Msg-Id "victim@<next seq>" makes the stream drop the victim's ready
// publication (group b) as a duplicate; admission sees an Ok PubAck (with
// Duplicate set, unchecked) and acks the job: it is never called, never
// answered, gone.
func TestHostileMsgIDCannotSwallowAnotherGroupsJob(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{groups: map[string]quota.Policy{"a": pol, "b": pol}})
	ctx := context.Background()
	st, err := k.js.Stream(ctx, queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := info.State.LastSeq + 2 // the hostile message takes +1, the victim +2
	// An invalid job: answered at once, nothing admitted, so the victim's seq is predictable.
	k.publish("sendid.jobs.a", "not json", "Nats-Msg-Id", "victim@"+strconv.FormatUint(next, 10))
	k.results.waitFinals(t, 1, 10*time.Second)
	k.publish("sendid.jobs.b", job("c", "s", "victim", "test.victim"))
	time.Sleep(3 * time.Second)
	if _, ok := k.results.finals()["victim"]; !ok {
		info, _ := st.Info(ctx)
		t.Fatalf("group b's job was never answered (sim calls: %d, messages left in %s: %d)", len(k.sim.Requests()), queue.Stream, info.State.Msgs)
	}
}
