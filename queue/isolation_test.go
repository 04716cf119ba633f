package queue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

func TestReplyRulesPerGroup(t *testing.T) {
	t.Parallel()
	r := queue.ReplyRules{Subjects: queue.Subjects{Prefix: "sendid"}}
	for subj, ok := range map[string]bool{
		"sendid.results.a":     true,
		"sendid.results.a.job": true,
		"sendid.results.b":     false,
		"sendid.results.ab":    false,
		"sendid.results.b.a":   false,
		"sendid.results":       false,
		"_R_.abc.def":          false,
		"_R_":                  false,
		"_GR_.x.y":             false,
		"_INBOX.x":             true,
		"app.results.x":        true,
		"sendid.ready.a":       false,
	} {
		err := r.CheckFor("a", subj)
		if (err == nil) != ok {
			t.Errorf("CheckFor(a, %q) = %v, want ok=%v", subj, err, ok)
		}
		if err != nil && !errors.Is(err, queue.ErrReplyTo) {
			t.Errorf("CheckFor(a, %q): not ErrReplyTo", subj)
		}
	}
	// A group's own allow-list applies on top of the built-in rules.
	eu := queue.ReplyRules{Subjects: queue.Subjects{Prefix: "sendid"}, Allow: []string{"eu.>", "sendid.results.>"}}
	for subj, ok := range map[string]bool{"eu.r": true, "us.r": false, "sendid.results.eu": true, "sendid.results.us": false} {
		if err := eu.CheckFor("eu", subj); (err == nil) != ok {
			t.Errorf("eu CheckFor(%q) = %v", subj, err)
		}
	}
}

func TestIDs(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	a, err := queue.NewIDs([]byte("0123456789abcdef0123456789abcdef"), created)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := queue.NewIDs([]byte("0123456789abcdef0123456789abcdef"), created)
	other, _ := queue.NewIDs([]byte("fedcba9876543210fedcba9876543210"), created)
	recreated, _ := queue.NewIDs([]byte("0123456789abcdef0123456789abcdef"), created.Add(time.Second))
	if _, err := queue.NewIDs([]byte("short"), created); err == nil {
		t.Error("a short secret was accepted")
	}
	if a.Job(3) != a2.Job(3) || a.Ready("g", "j", 3) != a2.Ready("g", "j", 3) || a.Dead("g", "j") != a2.Dead("g", "j") {
		t.Fatal("ids are not deterministic")
	}
	seen := map[string]string{}
	for name, id := range map[string]string{
		"job 3": a.Job(3), "job 4": a.Job(4), "job 3, other secret": other.Job(3), "job 3, recreated stream": recreated.Job(3),
		"ready g/j@3": a.Ready("g", "j", 3), "ready g/j@4": a.Ready("g", "j", 4), "ready h/j@3": a.Ready("h", "j", 3),
		"ready g/k@3": a.Ready("g", "k", 3), "dead g/j": a.Dead("g", "j"), "dead h/j": a.Dead("h", "j"),
	} {
		if prev, dup := seen[id]; dup {
			t.Errorf("%s and %s share id %s", name, prev, id)
		}
		seen[id] = name
		if strings.Contains(id, "@") || strings.HasSuffix(id, ".dead") || strings.Contains(id, "j") && !strings.HasPrefix(id, "SENDID-") {
			t.Errorf("%s: id %q shows its input", name, id)
		}
	}
	if !strings.HasPrefix(a.Job(3), "SENDID-") || len(a.Job(3)) != len("SENDID-")+32 || !queue.ValidID(a.Job(3)) {
		t.Errorf("job id %q", a.Job(3))
	}
}

// LoadIDs gives every worker of a deployment the same secret.
func TestLoadIDsShared(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.Connect()
	ctx := context.Background()
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: queue.Subjects{Prefix: "sendid"}, Replicas: 1, DuplicateWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	one, err := queue.LoadIDs(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, js2 := s.Connect()
	two, err := queue.LoadIDs(ctx, js2, 1)
	if err != nil {
		t.Fatal(err)
	}
	if one.Job(7) != two.Job(7) || one.Ready("g", "x", 7) != two.Ready("g", "x", 7) {
		t.Fatal("two workers derived different ids")
	}
}

// A message published by someone else under one of sendid's internal ids
// does not swallow sendid's own publication; a genuine re-publication is
// still de-duplicated.
func TestInternalPublicationsCheckDuplicates(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := s.Connect()
	ctx := context.Background()
	subj := queue.Subjects{Prefix: "sendid"}
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ids, err := queue.LoadIDs(ctx, js, 1)
	if err != nil {
		t.Fatal(err)
	}
	pub := queue.NewPublisher(nc, js, subj, false)
	pub.UseIDs(ids)
	st, _ := js.Stream(ctx, queue.Stream)

	// The hostile message comes first (seq 1) under the id the ready copy of
	// the job at seq 2 will use (the attacker here even knows the secret).
	job := queue.Job{ID: "victim", CampaignID: "c"}
	readyID := ids.Ready("default", "victim", 2)
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "sendid.jobs", Data: []byte("junk"), Header: nats.Header{queue.HeaderMsgID: []string{readyID}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "sendid.jobs", []byte(`{"campaign_id":"c","id":"victim"}`)); err != nil {
		t.Fatal(err)
	}
	ack, err := pub.Ready(ctx, "default", job, readyID, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ack.Duplicate || ack.Sequence <= 2 {
		t.Fatalf("admission swallowed by a foreign duplicate: %+v", ack)
	}
	m, err := st.GetMsg(ctx, ack.Sequence)
	if err != nil || m.Subject != "sendid.ready.default" || !bytes.Contains(m.Data, []byte(`"victim"`)) {
		t.Fatalf("stored %v %v", m, err)
	}
	// A genuine re-admission (crash between publish and ack) is de-duplicated.
	again, err := pub.Ready(ctx, "default", job, readyID, 2)
	if err != nil || !again.Duplicate || again.Sequence != ack.Sequence {
		t.Fatalf("re-admission: %+v %v", again, err)
	}

	// Dead letters: a foreign message under the dead id, before the ready
	// message the letter comes from.
	deadID := ids.Dead("default", "victim")
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "sendid.jobs.x", Data: []byte("junk"), Header: nats.Header{queue.HeaderMsgID: []string{deadID}}}); err != nil {
		t.Fatal(err)
	}
	if err := pub.DeadLetter(ctx, "default", job, "gave up", ack.Sequence); err != nil {
		t.Fatal(err)
	}
	dead, err := queue.ListDead(ctx, js, subj)
	if err != nil || len(dead) != 1 || dead[0].Job.ID != "victim" {
		t.Fatalf("dead letters %+v %v", dead, err)
	}
	if err := pub.DeadLetter(ctx, "default", job, "gave up", ack.Sequence); err != nil {
		t.Fatal(err)
	}
	if dead, _ = queue.ListDead(ctx, js, subj); len(dead) != 1 {
		t.Fatalf("a re-published dead letter was stored twice: %d", len(dead))
	}
}

// SENDID bounded by bytes refuses new messages when full and keeps the
// stored ones; an existing stream is updated to the limit.
func TestStreamByteLimits(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.Connect()
	ctx := context.Background()
	subj := queue.Subjects{Prefix: "sendid"}
	// A stream from an earlier version: unlimited, discard old.
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: time.Minute, Results: true, ResultsMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	set := queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: time.Minute, Results: true, ResultsMaxAge: time.Hour,
		MaxBytes: 1 << 20, ResultsMaxBytes: 1 << 20}
	if err := queue.EnsureStreams(ctx, js, set); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, queue.Stream)
	if c := st.CachedInfo().Config; c.MaxBytes != 1<<20 || c.Discard != jetstream.DiscardNew {
		t.Fatalf("SENDID config %+v", c)
	}
	rs, _ := js.Stream(ctx, queue.ResultsStream)
	if c := rs.CachedInfo().Config; c.MaxBytes != 1<<20 || c.Discard != jetstream.DiscardOld {
		t.Fatalf("SENDID_RESULTS config %+v", c)
	}
	body := bytes.Repeat([]byte("x"), 16<<10)
	var full error
	stored := 0
	for i := 0; i < 200 && full == nil; i++ {
		if _, err := js.Publish(ctx, "sendid.jobs", body); err != nil {
			full = err
		} else {
			stored++
		}
	}
	if !queue.IsStreamFull(full) {
		t.Fatalf("after %d jobs: %v, want a stream-full error", stored, full)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != uint64(stored) || info.State.FirstSeq != 1 {
		t.Fatalf("stored jobs were dropped: %+v %v", info.State, err)
	}
}

// A replay's Nats-Msg-Id is guessable: taken beforehand by a publisher (and
// its message already consumed), the replay still reaches the job subject.
func TestReplayNotSwallowed(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := s.Connect()
	ctx := context.Background()
	subj := queue.Subjects{Prefix: "sendid"}
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	b, err := queue.EnsureBuckets(ctx, js, queue.BucketSettings{Replicas: 1, LedgerTTL: time.Hour, JobRecordTTL: time.Hour, PairTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pub := queue.NewPublisher(nc, js, subj, false)
	if err := pub.Dead(ctx, "default", queue.Job{ID: "victim", CampaignID: "c"}, "gave up"); err != nil {
		t.Fatal(err)
	}
	dead, err := queue.ListDead(ctx, js, subj)
	if err != nil || len(dead) != 1 {
		t.Fatalf("%v %v", dead, err)
	}
	st, _ := js.Stream(ctx, queue.Stream)
	hack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "sendid.jobs", Data: []byte("junk"),
		Header: nats.Header{queue.HeaderMsgID: []string{fmt.Sprintf("victim.replay.%d", dead[0].Seq)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, hack.Sequence); err != nil { // admission consumed it
		t.Fatal(err)
	}
	if err := queue.Replay(ctx, js, subj, queue.NewRecords(b.Jobs, b.Pairs), dead[0]); err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, hack.Sequence+1, jetstream.WithGetMsgSubject("sendid.jobs.default"))
	if err != nil || !bytes.Contains(m.Data, []byte(`"victim"`)) {
		t.Fatalf("replay not stored: %v %v", m, err)
	}
	if dead, _ = queue.ListDead(ctx, js, subj); len(dead) != 0 {
		t.Fatalf("dead letter kept: %v", dead)
	}
}

// Byte limits that do not fit the server's storage are reported as such
// (the worker names the settings); -1 reserves nothing.
func TestStreamByteLimitsMustFit(t *testing.T) {
	t.Parallel()
	ns := runServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir(), JetStreamMaxStore: 64 << 20})
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	set := queue.StreamSettings{Subjects: queue.Subjects{Prefix: "sendid"}, Replicas: 1, DuplicateWindow: time.Minute, Results: true, ResultsMaxAge: time.Hour,
		MaxBytes: 1 << 30, ResultsMaxBytes: 256 << 20}
	if err := queue.EnsureStreams(ctx, js, set); !queue.IsStorageExceeded(err) {
		t.Fatalf("1 GiB on a 64 MiB server: %v", err)
	}
	set.MaxBytes, set.ResultsMaxBytes = -1, 16<<20
	if err := queue.EnsureStreams(ctx, js, set); err != nil {
		t.Fatal(err)
	}
}
