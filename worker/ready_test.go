package worker_test

import (
	"testing"
	"time"

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// Regression test (found in review; fixed): ARCHITECTURE §3 "Reply subjects are untrusted input: a job may
// only name a valid, wildcard-free subject outside the reserved space: never
// a subject starting with $ ($JS.API.>, $KV.> ...)". The SENDID stream
// captures sendid.ready.*, and the lane trusts whatever it finds there
// ("only admission writes here"): a message published straight to
// sendid.ready.<group> skips every admission check, and the lane publishes
// its result to its reply_to unchecked. Here the reply_to is the group's
// ledger key in $KV.SENDID_LEDGER: the result overwrites the ledger record,
// and the period's count of 1 becomes 0 (the hard cap's authority forged).
func TestForgedReadyMessageCannotDriveKV(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{groups: map[string]quota.Policy{"default": pol}})
	key := quota.Key("default", pol.PeriodAt(time.Now()))
	k.publish("sendid.ready.default", `{"campaign_id":"c","send_id":"s2","id":"evil","reply_to":"$KV.`+queue.LedgerBucket+`.`+key+`"}`)
	for deadline := time.Now().Add(5 * time.Second); len(k.sim.Requests()) == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	if n, used := len(k.sim.Requests()), k.used(); used != n {
		t.Fatalf("Braze saw %d call(s) this period, the ledger counts %d: a ready message's reply_to wrote the ledger record", n, used)
	}
}

// Regression test (found in review; fixed): a message on sendid.ready.<group> without reply_to (or with any
// subject the publisher cannot publish to) is called, then its result cannot
// be published; finish NAKs it forever and, being the head of a FIFO with
// one job in flight, it blocks every job of the group behind it
// ("a malformed or hostile job stopping jobs behind it").
func TestForgedReadyMessageWithoutReplyDoesNotBlockLane(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	k.publish("sendid.ready.default", `{"campaign_id":"c","send_id":"s0","id":"noreply"}`)
	k.publish("sendid.jobs", job("c", "s1", "good", "test.good"))
	time.Sleep(5 * time.Second)
	if _, ok := k.results.finals()["good"]; !ok {
		t.Fatalf("the job behind a ready message without reply_to was never answered (sim calls %d)", len(k.sim.Requests()))
	}
}
