package queue_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sendid/sendid/queue"
)

func TestReplyRules(t *testing.T) {
	t.Parallel()
	r := queue.ReplyRules{Subjects: queue.Subjects{Prefix: "sendid"}}
	for subj, ok := range map[string]bool{
		"app.results.job-1":            true,
		"_INBOX.abc.def":               true,
		"sendid.results.default":       true,
		"sendid.jobsx":                 true,
		"$JS.API.STREAM.DELETE.SENDID": false,
		"$KV.SENDID_LEDGER.x":          false,
		"$SYS.REQ.SERVER.PING":         false,
		"$O.x":                         false,
		"sendid.jobs":                  false,
		"sendid.jobs.default":          false,
		"sendid.ready.default":         false,
		"sendid.dead.eu":               false,
		"a.*.b":                        false,
		"a.>":                          false,
		"a..b":                         false,
		".a":                           false,
		"a b":                          false,
		"a\tb":                         false,
		"":                             false,
		strings.Repeat("a", 256):       false,
		"résultats":                    false,
	} {
		err := r.Check(subj)
		if (err == nil) != ok {
			t.Errorf("Check(%q) = %v, want ok=%v", subj, err, ok)
		}
		if err != nil && !errors.Is(err, queue.ErrReplyTo) {
			t.Errorf("Check(%q) error not ErrReplyTo", subj)
		}
	}
	allow := queue.ReplyRules{Subjects: queue.Subjects{Prefix: "sendid"}, Allow: []string{"app.results.>", "_INBOX.*"}}
	for subj, ok := range map[string]bool{"app.results.x.y": true, "_INBOX.a": true, "_INBOX.a.b": false, "other": false} {
		if err := allow.Check(subj); (err == nil) != ok {
			t.Errorf("allow-list Check(%q) = %v", subj, err)
		}
	}
}

func TestDecodeJob(t *testing.T) {
	t.Parallel()
	j, err := queue.DecodeJob([]byte(`{"campaign_id":"c","send_id":"s","id":"i","reply_to":"r","not_after":"2026-11-28T18:00:00Z","meta":{"a":[1,2]}}`), 1024)
	if err != nil || j.CampaignID != "c" || j.SendID != "s" || j.ID != "i" || j.ReplyTo != "r" || j.NotAfter == nil || string(j.Meta) != `{"a":[1,2]}` {
		t.Fatalf("%+v %v", j, err)
	}
	for name, body := range map[string]string{
		"not json": `x`, "array": `[]`, "string": `"s"`, "null": `null`, "numeric campaign": `{"campaign_id":1}`,
		"unknown": `{"campaign_id":"c","x":1}`, "utf8": "{\"campaign_id\":\"\xc3\x28\"}", "trailing": `{"campaign_id":"c"}x`,
		"empty send_id": `{"campaign_id":"c","send_id":""}`, "bad time": `{"campaign_id":"c","not_after":"soon"}`,
		"long id": `{"campaign_id":"c","id":"` + strings.Repeat("i", 129) + `"}`, "big meta": `{"campaign_id":"c","meta":"` + strings.Repeat("m", 5000) + `"}`,
		"oversized": `{"campaign_id":"` + strings.Repeat("c", 2000) + `"}`,
	} {
		_, err := queue.DecodeJob([]byte(body), 1024)
		var je *queue.JobError
		if !errors.As(err, &je) || je.Code != queue.CodeInvalidJob || je.Message == "" {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A rule error after parsing still returns reply_to.
	j, err = queue.DecodeJob([]byte(`{"campaign_id":"c","send_id":"","reply_to":"back"}`), 1024)
	if err == nil || j.ReplyTo != "back" {
		t.Fatalf("%+v %v", j, err)
	}
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	s := queue.Subjects{Prefix: "sendid"}
	for subj, want := range map[string]string{"sendid.jobs": "default", "sendid.jobs.eu": "eu"} {
		if g, err := s.GroupOf(subj); err != nil || g != want {
			t.Errorf("GroupOf(%q) = %q, %v", subj, g, err)
		}
	}
	for _, bad := range []string{"sendid.jobs.", "sendid.jobs.a.b", "other.jobs.a", "sendid.ready.a"} {
		if _, err := s.GroupOf(bad); err == nil {
			t.Errorf("GroupOf(%q) accepted", bad)
		}
	}
}
