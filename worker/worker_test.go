package worker_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// 1. Three valid jobs → three created results on their reply subjects, and
// exactly three well-formed requests at the simulator.
func TestCreatesAndAnswers(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	for i := range 3 {
		k.publish("sendid.jobs", map[string]any{"campaign_id": "c1", "send_id": fmt.Sprint("s", i), "id": fmt.Sprint("j", i),
			"reply_to": fmt.Sprint("test.r", i), "meta": map[string]any{"n": i, "tag": "x"}})
	}
	f := k.results.waitFinals(t, 3, 10*time.Second)
	for i := range 3 {
		r := f[fmt.Sprint("j", i)]
		if r.Status != "created" || r.Subject != fmt.Sprint("test.r", i) || r.SendID != fmt.Sprint("s", i) || r.Attempts != 1 ||
			r.Duplicate || r.AppGroup != "default" || r.MsgID != fmt.Sprintf("default.j%d.created", i) || string(r.Meta) != fmt.Sprintf(`{"n":%d,"tag":"x"}`, i) {
			t.Errorf("job %d: %+v", i, r)
		}
	}
	reqs := k.sim.Requests()
	if len(reqs) != 3 {
		t.Fatalf("simulator saw %d requests, want 3", len(reqs))
	}
	for _, r := range reqs {
		if !r.WellFormed || r.Status != 201 || r.Key != "key-default" {
			t.Errorf("request %+v", r)
		}
	}
}

// 2. Cap 5 per 10 s, 12 jobs at once: never more than 5 calls per period,
// a deferred notice for exactly the jobs that run after the admission
// period with the boundary they run after, all created in publish order.
func TestCapAcrossPeriods(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 5, Burst: 5, Period: 10 * time.Second}
	k := newKit(t, kitOptions{
		groups: map[string]quota.Policy{"default": pol},
		sim:    brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "key-default", Cap: 5, Period: 10 * time.Second}}},
	})
	// Start just after a period boundary so that admission is quick
	// compared with the period.
	time.Sleep(time.Until(pol.PeriodAt(time.Now()).End.Add(200 * time.Millisecond)))
	admitPeriod := pol.PeriodAt(time.Now())
	jobIDs := ids(12, "j")
	for _, id := range jobIDs {
		// A little apart, as real publishers are: admission then forecasts
		// while the lane is running jobs, not before.
		k.publish("sendid.jobs", job("c", "s-"+id, id, "test.r."+id))
		time.Sleep(30 * time.Millisecond)
	}
	f := k.results.waitFinals(t, 12, 40*time.Second)

	notices := map[string]received{}
	for _, r := range k.results.snapshot() {
		if r.Status == "deferred" {
			if _, dup := notices[r.ID]; dup {
				t.Errorf("two deferred notices for %s", r.ID)
			}
			notices[r.ID] = r
		}
	}
	reqs := k.sim.Requests()
	perPeriod := map[time.Time]int{}
	createdAt := map[string]time.Time{}
	var order []string
	for _, r := range reqs {
		perPeriod[pol.PeriodAt(r.At).Start]++
		if r.Status == 201 {
			createdAt[strings.TrimPrefix(r.SendID, "s-")] = r.At
			order = append(order, strings.TrimPrefix(r.SendID, "s-"))
		}
	}
	for p, n := range perPeriod {
		if n > 5 {
			t.Errorf("%d calls in the period starting %s", n, p)
		}
	}
	if !sort.StringsAreSorted(order) || len(order) != 12 {
		t.Errorf("created order %v", order)
	}
	for _, id := range jobIDs {
		if f[id].Status != "created" {
			t.Errorf("%s: %+v", id, f[id])
		}
		ran := pol.PeriodAt(createdAt[id]).Start
		n, deferred := notices[id]
		switch {
		case ran.Equal(admitPeriod.Start) && deferred:
			t.Errorf("%s ran in the admission period but got a notice %+v", id, n.Result)
		case !ran.Equal(admitPeriod.Start) && !deferred:
			t.Errorf("%s ran in the period of %s without a deferred notice", id, ran)
		case deferred && !n.DeferredUntil.Equal(ran):
			t.Errorf("%s: deferred_until %s, ran in the period starting %s", id, n.DeferredUntil, ran)
		case deferred && (n.ETA == nil || n.ETA.Before(*n.DeferredUntil) || n.Position == nil):
			t.Errorf("%s: notice %+v", id, n.Result)
		}
	}
	if len(notices) != 7 {
		t.Errorf("%d deferred notices, want 7", len(notices))
	}
}

// 3. The simulator already at 3 of 5 with lower-case headers: at most 2
// successes in that period and at most one 429; the rest after the reset.
func TestBrazeHeadersCorrectTheLedger(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 5, Burst: 5, Period: 10 * time.Second}
	k := newKit(t, kitOptions{
		groups: map[string]quota.Policy{"default": pol},
		sim: brazetest.Options{LowerCaseHeaders: true,
			Workspaces: []brazetest.Workspace{{Key: "key-default", Cap: 5, Period: 10 * time.Second, Used: 3}}},
	})
	first := pol.PeriodAt(time.Now())
	if time.Until(first.End) < 3*time.Second {
		t.Skip("too close to a period boundary for a meaningful first period") // re-run decides; rare
	}
	for _, id := range ids(5, "j") {
		k.publish("sendid.jobs", job("c", "s-"+id, id, "test.r."+id))
	}
	f := k.results.waitFinals(t, 5, 30*time.Second)
	ok, limited := 0, 0
	for _, r := range k.sim.Requests() {
		if first.Contains(r.At) {
			switch r.Status {
			case 201:
				ok++
			case 429:
				limited++
			}
		}
	}
	if ok > 2 || limited > 1 {
		t.Fatalf("first period: %d successes, %d 429s", ok, limited)
	}
	for id, r := range f {
		if r.Status != "created" {
			t.Errorf("%s: %+v", id, r)
		}
	}
}

// 4. Every malformed job gets one failed result with the right code, no
// Braze call, and the worker keeps serving.
func TestMalformedCorpus(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	big := `{"campaign_id":"c","meta":"` + strings.Repeat("x", 70<<10) + `"}`
	cases := []struct {
		name, subject, body, hdrReply, wantCode, wantSubject string
	}{
		{"not json", "sendid.jobs", `hello`, "test.h.1", "invalid_job", "test.h.1"},
		{"array", "sendid.jobs", `[{"campaign_id":"c"}]`, "test.h.2", "invalid_job", "test.h.2"},
		{"no campaign", "sendid.jobs", `{"send_id":"s","reply_to":"test.b.3"}`, "", "invalid_job", "test.b.3"},
		{"numeric campaign", "sendid.jobs", `{"campaign_id":42,"reply_to":"test.b.4"}`, "test.h.4", "invalid_job", "test.b.4"},
		{"send_id 65 bytes", "sendid.jobs", `{"campaign_id":"c","send_id":"` + strings.Repeat("s", 65) + `","reply_to":"test.b.5"}`, "", "invalid_job", "test.b.5"},
		{"send_id non-ascii", "sendid.jobs", `{"campaign_id":"c","send_id":"sé","reply_to":"test.b.6"}`, "", "invalid_job", "test.b.6"},
		{"unknown field", "sendid.jobs", `{"campaign_id":"c","color":"red","reply_to":"test.b.7"}`, "test.h.7", "invalid_job", "test.b.7"},
		{"invalid utf-8", "sendid.jobs", "{\"campaign_id\":\"c\xff\"}", "test.h.8", "invalid_job", "test.h.8"},
		{"oversized", "sendid.jobs", big, "test.h.9", "invalid_job", "test.h.9"},
		{"reply to JS API", "sendid.jobs", `{"campaign_id":"c","id":"r1","reply_to":"$JS.API.STREAM.DELETE.SENDID"}`, "", "invalid_reply_to", "sendid.results.default"},
		{"reply under jobs", "sendid.jobs", `{"campaign_id":"c","id":"r2","reply_to":"sendid.jobs.default"}`, "", "invalid_reply_to", "sendid.results.default"},
		{"wildcard reply", "sendid.jobs", `{"campaign_id":"c","id":"r3","reply_to":"test.*"}`, "", "invalid_reply_to", "sendid.results.default"},
		{"unknown group", "sendid.jobs.nope", `{"campaign_id":"c","reply_to":"test.b.13"}`, "", "unknown_app_group", "test.b.13"},
		{"empty send_id", "sendid.jobs", `{"campaign_id":"c","send_id":"","reply_to":"test.b.14"}`, "", "invalid_job", "test.b.14"},
		{"bad not_after", "sendid.jobs", `{"campaign_id":"c","not_after":"tomorrow","reply_to":"test.b.15"}`, "test.h.15", "invalid_job", "test.b.15"},
		{"reply to KV", "sendid.jobs", `{"campaign_id":"c","id":"r4","reply_to":"$KV.SENDID_LEDGER.x"}`, "", "invalid_reply_to", "sendid.results.default"},
		{"reply under ready", "sendid.jobs", `{"campaign_id":"c","id":"r5","reply_to":"sendid.ready.default"}`, "", "invalid_reply_to", "sendid.results.default"},
		{"trailing data", "sendid.jobs", `{"campaign_id":"c"} {}`, "test.h.18", "invalid_job", "test.h.18"},
		{"reply to control", "sendid.jobs", `{"campaign_id":"c","id":"r6","reply_to":"sendid.ctl.quota"}`, "", "invalid_reply_to", "sendid.results.default"},
		{"reply to system", "sendid.jobs", `{"campaign_id":"c","id":"r7","reply_to":"$SYS.REQ.SERVER.PING"}`, "", "invalid_reply_to", "sendid.results.default"},
	}
	for _, tc := range cases {
		var hdr []string
		if tc.hdrReply != "" {
			hdr = []string{"Reply-To", tc.hdrReply}
		}
		k.publish(tc.subject, tc.body, hdr...)
	}
	k.publish("sendid.jobs", job("c", "after", "valid", "test.valid"))
	f := k.results.waitFinals(t, len(cases)+1, 15*time.Second)
	bySubject := map[string][]received{}
	for _, r := range f {
		bySubject[r.Subject] = append(bySubject[r.Subject], r)
	}
	for _, tc := range cases {
		rs := bySubject[tc.wantSubject]
		found := false
		for _, r := range rs {
			if r.Status == "failed" && r.Error != nil && r.Error.Code == tc.wantCode && r.Error.Message != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no failed/%s result on %s (got %+v)", tc.name, tc.wantCode, tc.wantSubject, rs)
		}
	}
	if got := f["valid"]; got.Status != "created" {
		t.Errorf("valid job after the corpus: %+v", got)
	}
	if n := len(k.sim.Requests()); n != 1 {
		t.Errorf("%d Braze calls, want 1 (the valid job)", n)
	}
	if _, err := k.js.Stream(context.Background(), queue.Stream); err != nil {
		t.Errorf("stream gone: %v", err)
	}
	if all := k.results.snapshot(); len(all) != len(cases)+1 {
		t.Errorf("%d results for %d jobs", len(all), len(cases)+1)
	}
}

// 5. The same pair in two jobs and the same job id twice → one Braze call;
// the duplicates end created with duplicate: true.
func TestDuplicates(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	k.publish("sendid.jobs", job("c", "pair", "a", "test.a"))
	k.publish("sendid.jobs", job("c", "pair", "b", "test.b"))
	k.publish("sendid.jobs", job("c", "other", "a", "test.a2"))
	k.results.waitFinals(t, 2, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	var got []received
	for time.Now().Before(deadline) {
		got = k.results.snapshot()
		if len(got) >= 3 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) != 3 {
		t.Fatalf("results %+v", got)
	}
	by := map[string]received{}
	for _, r := range got {
		by[r.Subject] = r
	}
	if r := by["test.a"]; r.Status != "created" || r.Duplicate || r.Attempts != 1 {
		t.Errorf("first: %+v", r)
	}
	if r := by["test.b"]; r.Status != "created" || !r.Duplicate || r.SendID != "pair" || r.ID != "b" {
		t.Errorf("same pair: %+v", r)
	}
	if r := by["test.a2"]; r.Status != "created" || !r.Duplicate || r.ID != "a" || r.SendID != "pair" {
		t.Errorf("same id: %+v", r)
	}
	if n := len(k.sim.Requests()); n != 1 {
		t.Errorf("%d Braze calls, want 1", n)
	}
}

// 6a. 503 twice then success → created with attempts 3.
func TestRetriesThenCreated(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{sim: brazetest.Options{FailFirst: 2, FailFirstStatus: 503}})
	k.publish("sendid.jobs", job("c", "s", "j", "test.j"))
	r := k.results.waitFinals(t, 1, 10*time.Second)["j"]
	if r.Status != "created" || r.Attempts != 3 {
		t.Fatalf("%+v", r)
	}
}

// 6b. Retries run out → failed/retries_exhausted and a copy on the dead
// subject.
func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{maxAttempts: 3, sim: brazetest.Options{FailFirst: 100, FailFirstStatus: 502}})
	k.publish("sendid.jobs", job("c", "s", "j", "test.j"))
	r := k.results.waitFinals(t, 1, 10*time.Second)["j"]
	if r.Status != "failed" || r.Attempts != 3 || r.Error == nil || r.Error.Code != "retries_exhausted" {
		t.Fatalf("%+v", r)
	}
	msg, err := k.js.Stream(context.Background(), queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := msg.GetLastMsgForSubject(context.Background(), "sendid.dead.default")
	if err != nil || !strings.Contains(string(dead.Data), `"id":"j"`) {
		t.Fatalf("dead letter: %v %+v", err, dead)
	}
}

// 6c. A 401 fails no job; with the key corrected the lane resumes.
func TestConfigFaultPausesWithoutFailing(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 10, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{
		groups: map[string]quota.Policy{"default": pol},
		keys:   map[string]string{"default": "wrong"},
		sim:    brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "right"}}},
	})
	for _, id := range ids(3, "j") {
		k.publish("sendid.jobs", job("c", "s-"+id, id, "test."+id))
	}
	time.Sleep(time.Second)
	if got := k.results.finals(); len(got) != 0 {
		t.Fatalf("jobs answered while the key is wrong: %+v", got)
	}
	if n := len(k.sim.Requests()); n < 1 || n > 2 {
		t.Fatalf("%d calls with a wrong key; the lane should pause after the first", n)
	}
	if err := k.w.Reload([]worker.Group{{Name: "default", Key: braze.Key("right"), Sender: k.client, Policy: pol}}); err != nil {
		t.Fatal(err)
	}
	f := k.results.waitFinals(t, 3, 10*time.Second)
	for id, r := range f {
		if r.Status != "created" {
			t.Errorf("%s: %+v", id, r)
		}
	}
}

// 6d. A 400 from Braze → failed/braze_rejected with Braze's message.
func TestRejected(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{sim: brazetest.Options{Campaigns: []string{"known"}}})
	k.publish("sendid.jobs", job("unknown", "s", "j", "test.j"))
	r := k.results.waitFinals(t, 1, 10*time.Second)["j"]
	if r.Status != "failed" || r.Error == nil || r.Error.Code != "braze_rejected" || r.Error.Message != "Invalid Campaign ID" || r.Error.HTTPStatus != 400 {
		t.Fatalf("%+v", r)
	}
}

// 7. A job whose not_after passes while it waits → expired, no call.
func TestExpiresWhileWaiting(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{sim: brazetest.Options{Latency: 2 * time.Second}})
	k.publish("sendid.jobs", job("c", "slow", "slow", "test.slow"))
	late := job("c", "late", "late", "test.late")
	late["not_after"] = time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	k.publish("sendid.jobs", late)
	past := job("c", "past", "past", "test.past")
	past["not_after"] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	k.publish("sendid.jobs", past)
	f := k.results.waitFinals(t, 3, 15*time.Second)
	for _, id := range []string{"late", "past"} {
		if r := f[id]; r.Status != "expired" || r.Error == nil || r.Error.Code != "expired" || r.Attempts != 0 {
			t.Errorf("%s: %+v", id, r)
		}
	}
	for _, r := range k.sim.Requests() {
		if r.SendID != "slow" {
			t.Errorf("call for %s", r.SendID)
		}
	}
}

// A result published while nobody listens is kept by SENDID_RESULTS.
func TestResultsStreamKeepsResults(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	k.publish("sendid.jobs", job("c", "s", "j", ""))
	k.results.waitFinals(t, 1, 10*time.Second)
	s, err := k.js.Stream(context.Background(), queue.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), "sendid.results.default")
	if err != nil || !strings.Contains(string(m.Data), `"status":"created"`) {
		t.Fatalf("%v %+v", err, m)
	}
}
