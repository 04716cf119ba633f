package worker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// junkGroups is 2,000 by default to keep go test fast; .ci/run runs the
// issue's size, 20,000.
var junkGroups = flag.Int("security.junk", 2000, "unknown group names published by TestUnknownGroupsFoldIntoOneSeries")

// stuckSender holds every call for campaign "stuck" until released (or the
// call's context ends); other calls pass through.
type stuckSender struct {
	worker.Sender
	entered chan struct{}
	release chan struct{}
}

func (s *stuckSender) CreateSendID(ctx context.Context, key braze.Key, req braze.CreateSendIDRequest) (braze.CreateSendIDResponse, error) {
	if req.CampaignID == "stuck" {
		select {
		case s.entered <- struct{}{}:
		default:
		}
		select {
		case <-s.release:
		case <-ctx.Done():
			return braze.CreateSendIDResponse{}, &braze.Error{Class: braze.Retryable, Message: "stuck call cut", Err: ctx.Err()}
		}
	}
	return s.Sender.CreateSendID(ctx, key, req)
}

// Must hold #1: two groups, the same job ids — chosen, and the guessable
// shape of default ids — each job gets its own group's answer, created with
// its own group's key; a job of group a stuck in flight never delays group b.
// (Job records are keyed by app group: queue/records.go.)
func TestGroupsAreIsolated(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 1000, Burst: 1000, Period: 24 * time.Hour}
	stuck := &stuckSender{entered: make(chan struct{}, 1), release: make(chan struct{})}
	k := newKit(t, kitOptions{
		groups: map[string]quota.Policy{"a": pol, "b": pol},
		sim:    brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "key-a", Cap: 1000}, {Key: "key-b", Cap: 1000}}},
		tune: func(g *worker.Group) {
			if g.Name == "a" {
				stuck.Sender = g.Sender
				g.Sender = stuck
			}
		},
	})
	defer func() {
		select {
		case <-stuck.release:
		default:
			close(stuck.release)
		}
	}()
	byGroup := func(group string) map[string]received {
		out := map[string]received{}
		for _, r := range k.results.snapshot() {
			if r.Status != queue.StatusDeferred && r.Subject == "test."+group {
				out[r.ID] = r
			}
		}
		return out
	}
	waitGroup := func(group string, n int) map[string]received {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for len(byGroup(group)) < n {
			if time.Now().After(deadline) {
				t.Fatalf("group %s: %d of %d results: %v", group, len(byGroup(group)), n, byGroup(group))
			}
			select {
			case <-k.results.more:
			case <-time.After(100 * time.Millisecond):
			}
		}
		return byGroup(group)
	}
	keyOf := map[string]string{} // send id → key it was created with
	sentWith := func() {
		for _, r := range k.sim.Requests() {
			keyOf[r.SendID] = r.Key
		}
	}

	// 1. Chosen ids: a finishes order-1..3, then b publishes the same ids.
	for i := 1; i <= 3; i++ {
		k.publish("sendid.jobs.a", job("c", fmt.Sprint("a-", i), fmt.Sprint("order-", i), "test.a"))
	}
	waitGroup("a", 3)
	for i := 1; i <= 3; i++ {
		k.publish("sendid.jobs.b", job("c", fmt.Sprint("b-", i), fmt.Sprint("order-", i), "test.b"))
	}
	got := waitGroup("b", 3)
	sentWith()
	for i := 1; i <= 3; i++ {
		r := got[fmt.Sprint("order-", i)]
		if r.AppGroup != "b" || r.Status != queue.StatusCreated || r.Duplicate || r.SendID != fmt.Sprint("b-", i) {
			t.Errorf("b's order-%d answered %+v", i, r.Result)
		}
		if keyOf[fmt.Sprint("b-", i)] != "key-b" || keyOf[fmt.Sprint("a-", i)] != "key-a" {
			t.Errorf("order-%d: b's pair created with %q, a's with %q", i, keyOf[fmt.Sprint("b-", i)], keyOf[fmt.Sprint("a-", i)])
		}
	}

	// 2. Guessable ids: group a takes every id of the old default shape
	// SENDID-<seq> that b's next jobs could get; b's id-less jobs are still
	// answered for themselves.
	for seq := 1; seq <= 60; seq++ {
		k.publish("sendid.jobs.a", job("c", fmt.Sprint("guess-", seq), fmt.Sprint("SENDID-", seq), "test.a"))
	}
	waitGroup("a", 63)
	for i := range 3 {
		k.publish("sendid.jobs.b", job("c", fmt.Sprint("anon-", i), "", "test.b"))
	}
	got = waitGroup("b", 6)
	sentWith()
	anon := 0
	for id, r := range got {
		if strings.HasPrefix(id, "order-") {
			continue
		}
		anon++
		if !strings.HasPrefix(id, "SENDID-") || len(id) < len("SENDID-")+32 {
			t.Errorf("default id %q is guessable", id)
		}
		if r.AppGroup != "b" || r.Status != queue.StatusCreated || r.Duplicate || !strings.HasPrefix(r.SendID, "anon-") || keyOf[r.SendID] != "key-b" {
			t.Errorf("b's id-less job answered %+v (key %q)", r.Result, keyOf[r.SendID])
		}
	}
	if anon != 3 {
		t.Errorf("%d id-less results for b, want 3", anon)
	}

	// 3. A stuck call in group a never delays group b, even for the same id.
	k.publish("sendid.jobs.a", job("stuck", "a-9", "order-9", "test.a"))
	select {
	case <-stuck.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("group a's call never started")
	}
	k.publish("sendid.jobs.b", job("c", "b-9", "order-9", "test.b"))
	k.publish("sendid.jobs.b", job("c", "b-10", "order-10", "test.b"))
	got = waitGroup("b", 8)
	for _, id := range []string{"order-9", "order-10"} {
		if r := got[id]; r.AppGroup != "b" || r.Status != queue.StatusCreated || r.Duplicate {
			t.Errorf("b's %s while a's order-9 was in flight: %+v", id, r.Result)
		}
	}
	if _, done := byGroup("a")["order-9"]; done {
		t.Fatal("a's stuck job finished before b's: the test proved nothing")
	}
	close(stuck.release)
	if r := waitGroup("a", 64)["order-9"]; r.AppGroup != "a" || r.Status != queue.StatusCreated || r.Duplicate || r.SendID != "a-9" {
		t.Errorf("a's order-9 answered %+v", r.Result)
	}
}

// doomedSender fails every call for campaign "doomed" with a 503.
type doomedSender struct{ worker.Sender }

func (s doomedSender) CreateSendID(ctx context.Context, key braze.Key, req braze.CreateSendIDRequest) (braze.CreateSendIDResponse, error) {
	if req.CampaignID == "doomed" {
		return braze.CreateSendIDResponse{}, &braze.Error{Class: braze.Retryable, StatusCode: 503, Message: "Service Unavailable"}
	}
	return s.Sender.CreateSendID(ctx, key, req)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Must hold #2: publishers use Nats-Msg-Ids shaped like every internal id
// sendid uses (admissions, dead letters; the old guessable shapes, the new
// shapes, and the exact id of the next admission): no job vanishes, no dead
// letter is dropped, every victim is answered.
func TestHostileMsgIDs(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{
		groups:      map[string]quota.Policy{"default": {Cap: 1000, Burst: 1000, Period: 24 * time.Hour}},
		maxAttempts: 2,
		tune:        func(g *worker.Group) { g.Sender = doomedSender{g.Sender} },
	})
	ctx := context.Background()
	ids := k.pub.IDs()
	// hostile publishes a junk job under msgID, then the victim right after
	// it; msgID may depend on the victim's id and stream sequence. It
	// returns the victim's id.
	hostile := func(victim, campaign string, msgID func(victim string, victimSeq uint64) string) string {
		t.Helper()
		for range 3 {
			st, _ := k.js.Stream(ctx, queue.Stream)
			info, _ := st.Info(ctx)
			next := info.State.LastSeq + 2
			ack, err := k.js.PublishMsg(ctx, &nats.Msg{Subject: "sendid.jobs", Data: []byte("junk"),
				Header: nats.Header{queue.HeaderMsgID: []string{msgID(victim, next)}}})
			if err != nil {
				t.Fatal(err)
			}
			vack, err := k.js.PublishMsg(ctx, &nats.Msg{Subject: "sendid.jobs", Data: mustJSON(job(campaign, "s-"+victim, victim, "test.victims"))})
			if err != nil {
				t.Fatal(err)
			}
			if !ack.Duplicate && ack.Sequence+1 == vack.Sequence && vack.Sequence == next {
				return victim
			}
			// Something published in between: the id aimed at the wrong
			// sequence. That victim must be answered too; aim again.
			k.results.waitFinals(t, len(k.results.finals())+1, 20*time.Second)
			victim += "x"
		}
		t.Fatalf("could not place the hostile message right before %s", victim)
		return ""
	}
	victims := map[string]string{} // victim id → status it must end with
	add := func(v, campaign string, id func(string, uint64) string) {
		t.Helper()
		v = hostile(v, campaign, id)
		victims[v] = queue.StatusCreated
		if campaign == "doomed" {
			victims[v] = queue.StatusFailed
		}
		// Its junk is answered before it (admission goes in order).
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, ok := k.results.finals()[v]; ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never answered", v)
			}
			select {
			case <-k.results.more:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	add("victim-1", "c", func(v string, seq uint64) string { return fmt.Sprintf("%s@%d", v, seq) })
	add("victim-2", "c", func(v string, seq uint64) string { return ids.Ready("default", v, seq) })
	add("victim-3", "c", func(string, uint64) string { return "ready-" + randomHex(16) })
	add("victim-4", "doomed", func(v string, _ uint64) string { return v + ".dead" })
	add("victim-5", "doomed", func(string, uint64) string { return "dead-" + randomHex(16) })
	add("victim-6", "doomed", func(v string, _ uint64) string { return ids.Dead("default", v) })

	finals := k.results.finals()
	for v, want := range victims {
		if r := finals[v]; r.Status != want || r.Subject != "test.victims" {
			t.Errorf("%s: answered %+v, want %s", v, r.Result, want)
		}
	}
	dead, err := queue.ListDead(ctx, k.js, k.subj)
	if err != nil {
		t.Fatal(err)
	}
	kept := 0
	for _, d := range dead {
		if victims[d.Job.ID] == queue.StatusFailed {
			kept++
		}
	}
	if kept != 3 || len(dead) != 3 {
		t.Errorf("dead letters %+v, want the 3 doomed victims", dead)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// Must hold #3: reply_to another group's results is refused; a forged
// result (old-format id, or the same job id in another group) never shadows
// the genuine one in SENDID_RESULTS.
func TestForgedResultsNeverShadow(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 100, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{groups: map[string]quota.Policy{"a": pol, "b": pol}})
	ctx := context.Background()

	for _, reply := range []string{"sendid.results.b", "sendid.results.b.v-1", "sendid.results", "_R_.abc.xyz", "_GR_.abc.xyz"} {
		k.publish("sendid.jobs.a", job("c", "x", "bad-"+reply, reply))
	}
	// The forger: group a's job v-1 aimed at b's results, and a direct
	// publication under the old result id format (the same job id in two
	// groups, each on its own results, is TestGroupsAreIsolated's).
	if _, err := k.js.PublishMsg(ctx, &nats.Msg{Subject: "sendid.results.b", Data: []byte(`{"id":"v-1","app_group":"b","status":"created","send_id":"FORGED"}`),
		Header: nats.Header{queue.HeaderMsgID: []string{"v-1.created"}}}); err != nil {
		t.Fatal(err)
	}
	k.publish("sendid.jobs.a", job("c", "a-v1", "bad-v-1", "sendid.results.b"))
	k.results.waitFinals(t, 6+1, 20*time.Second)
	k.publish("sendid.jobs.b", job("c", "b-v1", "v-1", ""))

	deadline := time.Now().Add(20 * time.Second)
	var genuine, forged, refused int
	for {
		genuine, forged, refused = 0, 0, 0
		for _, r := range k.results.snapshot() {
			switch {
			case r.Subject == "sendid.results.b" && r.SendID == "b-v1" && r.Status == queue.StatusCreated:
				genuine++
			case strings.HasPrefix(r.ID, "bad-"):
				if r.Error != nil && r.Error.Code == queue.CodeInvalidReplyTo && r.Subject == "sendid.results.a" {
					refused++
				} else {
					t.Fatalf("reply_to %s: answered %+v on %s", strings.TrimPrefix(r.ID, "bad-"), r.Result, r.Subject)
				}
			}
		}
		if genuine > 0 && refused == 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if refused != 6 || genuine != 1 {
		t.Fatalf("refused %d of 6, genuine results published %d", refused, genuine)
	}
	// What the results stream kept for group b.
	st, err := k.js.Stream(ctx, queue.ResultsStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("sendid.results.b"))
		if err != nil {
			break
		}
		var r queue.Result
		_ = json.Unmarshal(m.Data, &r)
		if r.SendID == "FORGED" {
			forged++
		}
		if r.SendID == "b-v1" && r.AppGroup == "b" && m.Header.Get(queue.HeaderMsgID) == "b.v-1.created" {
			genuine++
		}
		seq = m.Sequence + 1
	}
	if genuine != 2 || forged != 1 {
		t.Fatalf("SENDID_RESULTS on sendid.results.b: genuine stored %d (want 1), forged %d", genuine-1, forged)
	}
}

// Must hold #5a: jobs for 20,000 unknown group names (-security.junk) add one
// metric series, app_group="_unknown".
func TestUnknownGroupsFoldIntoOneSeries(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := worker.NewMetrics(reg)
	k := newKit(t, kitOptions{metrics: m})
	n := *junkGroups
	for i := range n {
		msg := &nats.Msg{Subject: fmt.Sprintf("sendid.jobs.junk-%d", i), Data: []byte(`{"campaign_id":"c"}`)}
		if _, err := k.js.PublishMsgAsync(msg); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 {
			select {
			case <-k.js.PublishAsyncComplete():
			case <-time.After(60 * time.Second):
				t.Fatal("publications not acknowledged")
			}
		}
	}
	k.results.waitFinals(t, n, 120*time.Second)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// Known groups may have zero-initialised series; beyond them, one
	// series counts every junk name.
	extra := 0
	for _, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() != "app_group" || l.GetValue() == "default" {
					continue
				}
				if l.GetValue() != worker.UnknownGroupLabel {
					t.Fatalf("%s has app_group %q", f.GetName(), l.GetValue())
				}
				if m.GetCounter().GetValue() > 0 || m.GetGauge().GetValue() > 0 {
					extra++
				}
				if f.GetName() == "sendid_jobs_total" && int(m.GetCounter().GetValue()) != n {
					t.Fatalf("sendid_jobs_total{app_group=%q} = %v, want %d", worker.UnknownGroupLabel, m.GetCounter().GetValue(), n)
				}
			}
		}
	}
	if extra != 1 {
		t.Fatalf("%d series with a value for unknown groups after %d names, want 1", extra, n)
	}
}

// Must hold #5b: max_backlog 100 and 150 jobs → the first 100 admitted in
// order, the last 50 answered failed/backlog_full.
func TestMaxBacklog(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{tune: func(g *worker.Group) { g.MaxBacklog = 100 }})
	ctx := context.Background()
	// Nothing drains while the test fills the backlog.
	if err := queue.PauseLane(ctx, k.js, k.subj, k.nc, "default", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		k.publish("sendid.jobs", job("c", fmt.Sprintf("s%03d", i), fmt.Sprintf("j%03d", i), "test.r"))
	}
	f := k.results.waitFinals(t, 50, 30*time.Second)
	for i := 100; i < 150; i++ {
		r, ok := f[fmt.Sprintf("j%03d", i)]
		if !ok || r.Status != queue.StatusFailed || r.Error == nil || r.Error.Code != queue.CodeBacklogFull {
			t.Errorf("j%03d: %v %+v", i, ok, r.Result)
		}
	}
	if len(f) != 50 {
		t.Errorf("%d final answers, want 50", len(f))
	}
	st, err := k.js.Stream(ctx, queue.Stream)
	if err != nil {
		t.Fatal(err)
	}
	var admitted []string
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("sendid.ready.default"))
		if err != nil {
			break
		}
		var j queue.Job
		_ = json.Unmarshal(m.Data, &j)
		admitted = append(admitted, j.ID)
		seq = m.Sequence + 1
	}
	if len(admitted) != 100 {
		t.Fatalf("%d admitted, want 100", len(admitted))
	}
	for i, id := range admitted {
		if id != fmt.Sprintf("j%03d", i) {
			t.Fatalf("admitted out of order at %d: %s", i, id)
		}
	}
}

// A full stream SENDID (discard new) refuses new publishes; the jobs it
// holds are each admitted or answered backlog_full — none is stuck or lost.
func TestFullStreamAnswersBacklogFull(t *testing.T) {
	t.Parallel()
	k := newKit(t, kitOptions{})
	ctx := context.Background()
	if err := queue.PauseLane(ctx, k.js, k.subj, k.nc, "default", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := queue.EnsureStreams(ctx, k.js, queue.StreamSettings{Subjects: k.subj, Replicas: 1, DuplicateWindow: 2 * time.Minute,
		Results: true, ResultsMaxAge: time.Hour, MaxBytes: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	meta := `"` + strings.Repeat("m", 4000) + `"`
	stored := 0
	for i := range 1000 {
		body := fmt.Sprintf(`{"campaign_id":"c","id":"j%04d","reply_to":"test.r","meta":%s}`, i, meta)
		if _, err := k.js.Publish(ctx, "sendid.jobs", []byte(body)); err != nil {
			if !queue.IsStreamFull(err) {
				t.Fatal(err)
			}
			break
		}
		stored++
	}
	if stored == 1000 {
		t.Fatal("the stream never filled")
	}
	// Every stored job ends admitted (waiting in the paused FIFO) or answered.
	cons, err := k.js.Consumer(ctx, queue.Stream, queue.LaneConsumer("default"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	var admitted, full int
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		admitted, full = int(info.NumPending)+info.NumAckPending, 0
		for _, r := range k.results.finals() {
			if r.Error != nil && r.Error.Code == queue.CodeBacklogFull {
				full++
			}
		}
		if admitted+full == stored || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d jobs stored before the stream was full: %d admitted, %d answered backlog_full", stored, admitted, full)
	if admitted+full != stored || full == 0 || len(k.results.finals()) != full {
		t.Fatalf("%d stored, %d admitted, %d backlog_full, %d answers", stored, admitted, full, len(k.results.finals()))
	}
}

// A group's own reply_subjects applies to its jobs only.
func TestReplySubjectsPerGroup(t *testing.T) {
	t.Parallel()
	pol := quota.Policy{Cap: 100, Burst: 100, Period: 24 * time.Hour}
	k := newKit(t, kitOptions{
		groups: map[string]quota.Policy{"a": pol, "b": pol},
		tune: func(g *worker.Group) {
			if g.Name == "a" {
				g.ReplyAllow = []string{"test.a.>"}
			}
		},
	})
	k.publish("sendid.jobs.a", job("c", "s1", "a-own", "test.a.r"))
	k.publish("sendid.jobs.a", job("c", "s2", "a-other", "test.b.r"))
	k.publish("sendid.jobs.b", job("c", "s3", "b-any", "test.b.r"))
	f := k.results.waitFinals(t, 3, 20*time.Second)
	if r := f["a-own"]; r.Status != queue.StatusCreated || r.Subject != "test.a.r" {
		t.Errorf("a-own: %+v on %s", r.Result, r.Subject)
	}
	if r := f["a-other"]; r.Error == nil || r.Error.Code != queue.CodeInvalidReplyTo || r.Subject != "sendid.results.a" {
		t.Errorf("a-other: %+v on %s", r.Result, r.Subject)
	}
	if r := f["b-any"]; r.Status != queue.StatusCreated || r.Subject != "test.b.r" {
		t.Errorf("b-any: %+v on %s", r.Result, r.Subject)
	}
}
