package ui

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/worker"
)

var now = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

type fakeSource struct {
	st      map[string]worker.GroupStatus
	orphans []queue.Orphan
}

func (f *fakeSource) Orphaned() []queue.Orphan { return f.orphans }

func (f *fakeSource) Groups() []string {
	out := make([]string, 0, len(f.st))
	for g := range f.st {
		out = append(out, g)
	}
	return out
}

func (f *fakeSource) StatusOf(_ context.Context, groups []string) ([]worker.GroupStatus, error) {
	out := []worker.GroupStatus{}
	for _, g := range groups {
		if s, ok := f.st[g]; ok {
			out = append(out, s)
		}
	}
	return out, nil
}

type fakeOps struct {
	mu      sync.Mutex
	calls   []string
	dead    []queue.DeadLetter
	replays int
}

func (o *fakeOps) DeadLetters(_ context.Context, group string) ([]queue.DeadLetter, error) {
	var out []queue.DeadLetter
	for _, d := range o.dead {
		if d.Group == group {
			out = append(out, d)
		}
	}
	return out, nil
}

func (o *fakeOps) record(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, s)
}

func (o *fakeOps) Pause(_ context.Context, group string, until time.Time) error {
	o.record("pause " + group + " " + until.UTC().Format(time.RFC3339))
	return nil
}
func (o *fakeOps) Resume(_ context.Context, group string) error {
	o.record("resume " + group)
	return nil
}
func (o *fakeOps) Replay(_ context.Context, group string, seq uint64) error {
	for _, d := range o.dead {
		if d.Group == group && d.Seq == seq {
			o.record(fmt.Sprintf("replay %s %d", group, seq))
			return nil
		}
	}
	return errNoDeadLetter
}
func (o *fakeOps) ReplayAll(_ context.Context, group string) (int, error) {
	o.record("replay-all " + group)
	return 1, nil
}

const adminToken = "admin-token-0123456789-secret"

type bundle struct {
	srv *httptest.Server
	src *fakeSource
	ops *fakeOps
}

func setup(t *testing.T, actions bool, groups int) *bundle {
	t.Helper()
	src := &fakeSource{st: map[string]worker.GroupStatus{}}
	reset := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for i := range groups {
		g := fmt.Sprintf("g%04d", i)
		src.st[g] = worker.GroupStatus{Group: g, Cap: 100, Used: i % 101, Remaining: 100 - i%101, NextReset: reset,
			Backlog: i, PacingInterval: "14m24s", Timezone: "Europe/Berlin"}
	}
	src.st["eu"] = worker.GroupStatus{Group: "eu", Cap: 40, Used: 40, Remaining: 0, NextReset: reset, Backlog: 7,
		DrainETA: reset.Add(3 * time.Hour), PacingInterval: "36m", Timezone: "UTC", InDoubt: 2}
	src.st["us"] = worker.GroupStatus{Group: "us", Cap: 100, Used: 3, Remaining: 97, NextReset: reset, Paused: true,
		PauseReason: "config_fault", LastFault: "Invalid API Key", PacingInterval: "14m24s", Timezone: "America/New_York"}
	src.orphans = []queue.Orphan{{Group: "gone", Jobs: 5}}
	ops := &fakeOps{dead: []queue.DeadLetter{{Seq: 9, Group: "eu", Job: queue.Job{ID: "j-9", CampaignID: "c"}, Reason: "gave up after 8 attempts", At: now}}}
	rec := NewRecent(nil)
	rec.Add(queue.Result{ID: "r-1", AppGroup: "eu", Status: queue.StatusCreated, SendID: "s-1", Attempts: 1})
	h := Handler(Options{Source: func() Source { return src }, Ops: ops, Recent: rec, Actions: actions,
		AdminToken: config.Secret(adminToken), Now: func() time.Time { return now }, Log: zaptest.NewLogger(t)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &bundle{srv: srv, src: src, ops: ops}
}

func (b *bundle) do(t *testing.T, method, path string, form url.Values, hdr map[string]string) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func TestOverviewShowsEveryNumber(t *testing.T) {
	b := setup(t, false, 0)
	code, body := b.do(t, "GET", "/ui", nil, nil)
	if code != 200 {
		t.Fatalf("GET /ui: %d %s", code, body)
	}
	for _, want := range []string{
		`<tr data-group="eu">`, `class="used" data-value="40"`, `class="cap" data-value="40"`, `class="remaining" data-value="0"`,
		`class="backlog" data-value="7"`, `data-value="exhausted"`, `1 per 36m`, `2026-11-30 00:00 UTC`, `in 14h`, // countdown from 10:00
		`<tr data-group="us">`, `data-value="config fault"`, `Invalid API Key`, `2026-11-29 19:00 EST`, // reset in New York time
		`2026-11-30 03:00Z`, // eu's drain ETA
		`http-equiv="refresh"`,
		`<tr data-orphan="gone">`, `data-value="5"`, "sendidctl orphans fail gone", // orphaned group
		`class="indoubt" data-value="2"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(body, "<script") {
		t.Error("the page must work without JavaScript")
	}
}

func TestFilterAndPages(t *testing.T) {
	b := setup(t, false, 1000)
	_, body := b.do(t, "GET", "/ui", nil, nil)
	if n := strings.Count(body, "<tr data-group="); n != PageSize {
		t.Fatalf("first page shows %d groups, want %d", n, PageSize)
	}
	if !strings.Contains(body, "page 1 of 21") || !strings.Contains(body, `rel="next"`) {
		t.Error("no pagination on 1,002 groups")
	}
	_, body = b.do(t, "GET", "/ui?page=21", nil, nil)
	if n := strings.Count(body, "<tr data-group="); n != 2 {
		t.Errorf("last page shows %d groups, want 2", n)
	}
	_, body = b.do(t, "GET", "/ui?q=g099", nil, nil)
	if n := strings.Count(body, "<tr data-group="); n != 10 || !strings.Contains(body, "10 of 10 app group(s)") {
		t.Errorf("filter g099 shows %d groups", n)
	}
	_, body = b.do(t, "GET", "/ui?page=999", nil, nil)
	if !strings.Contains(body, "page 21 of 21") {
		t.Error("a page past the end should show the last page")
	}
}

func TestActionsNeedTheToken(t *testing.T) {
	for _, actions := range []bool{false, true} {
		b := setup(t, actions, 0)
		_, body := b.do(t, "GET", "/ui", nil, nil)
		if strings.Contains(body, `class="pause"`) || strings.Contains(body, `class="resume"`) {
			t.Errorf("actions=%v: buttons shown without the token", actions)
		}
		if strings.Contains(body, `id="unlock"`) != actions {
			t.Errorf("actions=%v: unlock form shown=%v", actions, !actions)
		}
		for _, path := range []string{"/ui/groups/eu/pause", "/ui/groups/eu/resume", "/ui/groups/eu/dead/9/replay", "/ui/groups/eu/dead/replay-all"} {
			for _, hdr := range []map[string]string{nil, {"X-Sendid-Admin-Token": "wrong-token-0123456789"}, {"Authorization": "Bearer nope"}} {
				if code, _ := b.do(t, "POST", path, url.Values{"for": {"1h"}}, hdr); code != http.StatusForbidden {
					t.Errorf("actions=%v: forged POST %s %v: %d, want 403", actions, path, hdr, code)
				}
			}
			// The right token still gets 403 while actions are off.
			code, _ := b.do(t, "POST", path, url.Values{}, map[string]string{"X-Sendid-Admin-Token": adminToken})
			if !actions && code != http.StatusForbidden {
				t.Errorf("actions off: POST %s with the token: %d, want 403", path, code)
			}
		}
		if len(b.ops.calls) > 0 && !actions {
			t.Errorf("actions off, yet ops were called: %v", b.ops.calls)
		}
	}
}

func TestActionsWithTheToken(t *testing.T) {
	b := setup(t, true, 0)
	tok := map[string]string{"X-Sendid-Admin-Token": adminToken}
	_, body := b.do(t, "GET", "/ui", nil, tok)
	if !strings.Contains(body, `class="pause"`) || !strings.Contains(body, `class="resume"`) {
		t.Fatal("no buttons with the token")
	}
	steps := []struct {
		path string
		form url.Values
		code int
		call string
	}{
		{"/ui/groups/eu/pause", url.Values{}, 303, "pause eu 2026-11-30T00:00:00Z"}, // default: until the reset
		{"/ui/groups/eu/pause", url.Values{"for": {"90m"}}, 303, "pause eu 2026-11-29T11:30:00Z"},
		{"/ui/groups/eu/pause", url.Values{"for": {"-1h"}}, 400, ""},
		{"/ui/groups/eu/resume", url.Values{}, 303, "resume eu"},
		{"/ui/groups/eu/dead/9/replay", url.Values{}, 303, "replay eu 9"},
		{"/ui/groups/eu/dead/8/replay", url.Values{}, 404, ""},
		{"/ui/groups/eu/dead/replay-all", url.Values{}, 303, "replay-all eu"},
		{"/ui/groups/nosuch/pause", url.Values{}, 404, ""},
	}
	for _, s := range steps {
		before := len(b.ops.calls)
		code, body := b.do(t, "POST", s.path, s.form, tok)
		if code != s.code {
			t.Errorf("POST %s %v: %d, want %d (%s)", s.path, s.form, code, s.code, body)
			continue
		}
		if s.call != "" && (len(b.ops.calls) != before+1 || b.ops.calls[before] != s.call) {
			t.Errorf("POST %s: calls %v, want %q", s.path, b.ops.calls[before:], s.call)
		}
	}
	// Cross-site form posts are refused even with the cookie.
	code, _ := b.do(t, "POST", "/ui/groups/eu/resume", url.Values{}, map[string]string{"X-Sendid-Admin-Token": adminToken, "Origin": "https://evil.example"})
	if code != http.StatusForbidden {
		t.Errorf("cross-origin POST: %d, want 403", code)
	}
}

func TestLoginCookieCarriesNoToken(t *testing.T) {
	b := setup(t, true, 0)
	req, _ := http.NewRequest("POST", b.srv.URL+"/ui/login", strings.NewReader(url.Values{"token": {adminToken}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d, %d cookies", resp.StatusCode, len(resp.Cookies()))
	}
	ck := resp.Cookies()[0]
	if strings.Contains(ck.Value, adminToken) || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie %+v", ck)
	}
	code, body := b.do(t, "GET", "/ui", nil, map[string]string{"Cookie": ck.Name + "=" + ck.Value})
	if code != 200 || !strings.Contains(body, `class="pause"`) {
		t.Error("the session cookie does not unlock the buttons")
	}
	if code, _ := b.do(t, "POST", "/ui/login", url.Values{"token": {"wrong"}}, nil); code != 403 {
		t.Errorf("wrong token login: %d", code)
	}
}

func TestGroupPage(t *testing.T) {
	b := setup(t, true, 0)
	code, body := b.do(t, "GET", "/ui/groups/eu", nil, map[string]string{"X-Sendid-Admin-Token": adminToken})
	if code != 200 {
		t.Fatalf("group page: %d", code)
	}
	for _, want := range []string{"r-1", "s-1", `data-seq="9"`, "gave up after 8 attempts", `class="replay"`, "replay all 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("group page lacks %q", want)
		}
	}
	if code, _ := b.do(t, "GET", "/ui/groups/nosuch", nil, nil); code != 404 {
		t.Errorf("unknown group page: %d", code)
	}
}

func TestNoSecretOnAnyPage(t *testing.T) {
	b := setup(t, true, 3)
	tok := map[string]string{"X-Sendid-Admin-Token": adminToken}
	for _, p := range []struct {
		method, path string
		hdr          map[string]string
	}{
		{"GET", "/ui", nil}, {"GET", "/ui", tok}, {"GET", "/ui/groups/eu", tok}, {"GET", "/ui/groups/nosuch", tok},
		{"POST", "/ui/groups/eu/pause", nil}, {"POST", "/ui/login", nil}, {"POST", "/ui/groups/eu/dead/x/replay", tok},
		{"GET", "/ui/style.css", nil},
	} {
		_, body := b.do(t, p.method, p.path, url.Values{"for": {"bad"}}, p.hdr)
		if strings.Contains(body, adminToken) {
			t.Errorf("%s %s shows the admin token", p.method, p.path)
		}
	}
}

func TestRecentKeepsTheLast50OfKnownGroups(t *testing.T) {
	r := NewRecent(func(g string) bool { return g == "a" })
	for i := range 120 {
		r.Add(queue.Result{ID: fmt.Sprint(i), AppGroup: "a"})
		r.Add(queue.Result{ID: fmt.Sprint(i), AppGroup: fmt.Sprint("junk", i)})
	}
	last := r.Last("a")
	if len(last) != RecentSize || last[0].ID != "119" || last[RecentSize-1].ID != "70" {
		t.Fatalf("last: %d, first %s", len(last), last[0].ID)
	}
	if len(r.rings) != 1 {
		t.Errorf("unknown groups grew the store: %d rings", len(r.rings))
	}
}

// BenchmarkOverview1000 renders the overview of 1,000 groups (the page's
// own cost; the status of the 50 shown comes from the worker).
func BenchmarkOverview1000(b *testing.B) {
	src := &fakeSource{st: map[string]worker.GroupStatus{}}
	for i := range 1000 {
		g := fmt.Sprintf("g%04d", i)
		src.st[g] = worker.GroupStatus{Group: g, Cap: 100, Used: i % 100, Remaining: 100 - i%100, NextReset: now.Add(time.Hour), Timezone: "UTC"}
	}
	h := Handler(Options{Source: func() Source { return src }, Now: func() time.Time { return now }})
	req := httptest.NewRequest("GET", "/ui", nil)
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
