package queue_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/queue"
)

// FuzzDecodeJob: any body yields a job or a *JobError, never a panic; a
// decoded job obeys the limits; validation of what decoded never panics.
func FuzzDecodeJob(f *testing.F) {
	for _, s := range []string{
		`{"campaign_id":"c","send_id":"s","id":"i","reply_to":"r","not_after":"2026-11-28T18:00:00Z","meta":{"a":[1,2,{"b":null}]}}`,
		`{"campaign_id":42}`, `[]`, `null`, `{"campaign_id":"c","x":1}`, "{\"campaign_id\":\"\xff\"}", `{"campaign_id":"c"} {}`,
		`{"campaign_id":"c","send_id":""}`, `{"meta":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		j, err := queue.DecodeJob(body, 4096)
		if err != nil {
			var je *queue.JobError
			if !errors.As(err, &je) || je.Code != queue.CodeInvalidJob || je.Message == "" {
				t.Fatalf("error %v is not an invalid_job JobError", err)
			}
			return
		}
		if len(body) > 4096 || len(j.ID) > queue.MaxIDBytes || len(j.Meta) > queue.MaxMetaBytes {
			t.Fatalf("limits not enforced: %d-byte body, %+v", len(body), j)
		}
		_ = braze.ValidateCampaignID(j.CampaignID)
		if j.SendID != "" {
			_ = braze.ValidateSendID(j.SendID)
		}
	})
}

// FuzzReplySubject: an accepted subject never starts with $, never has a
// wildcard, space or empty token, and is never under the worker's own
// subjects.
func FuzzReplySubject(f *testing.F) {
	for _, s := range []string{"app.results.1", "_INBOX.x", "$JS.API.STREAM.DELETE.SENDID", "sendid.jobs.default", "sendid.ready.x",
		"a.*", "a.>", "a..b", " ", "sendid.ctl.quota", "sendid.jobsx", "$KV.b.k", "sendid.results.default"} {
		f.Add(s)
	}
	r := queue.ReplyRules{Subjects: queue.Subjects{Prefix: "sendid"}}
	f.Fuzz(func(t *testing.T, subj string) {
		if r.Check(subj) != nil {
			return
		}
		if subj == "" || subj[0] == '$' || strings.ContainsAny(subj, "*> \t\r\n") || strings.Contains(subj, "..") ||
			strings.HasPrefix(subj, ".") || strings.HasSuffix(subj, ".") {
			t.Fatalf("accepted %q", subj)
		}
		for _, own := range []string{"sendid.jobs", "sendid.ready", "sendid.dead", "sendid.ctl"} {
			if subj == own || strings.HasPrefix(subj, own+".") {
				t.Fatalf("accepted the worker's own subject %q", subj)
			}
		}
	})
}
