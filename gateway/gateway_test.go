package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/gateway"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// env is a gateway in front of a real worker, an embedded NATS server and
// the Braze simulator.
type env struct {
	t       *testing.T
	ns      *natstest.Server
	sim     *brazetest.Server
	gw      *gateway.Gateway
	metrics *gateway.Metrics
	url     string
	start   func() // starts the worker (once) when lateWorker was set
}

type envOptions struct {
	groups      map[string]quota.Policy // default: {"default": 100/day, burst 10}
	tokens      map[string][]string     // gateway tokens per group
	sim         brazetest.Options
	maxWaiting  int
	maxAttempts int
	timeouts    time.Duration // read-header, read and idle timeouts (default: the gateway's)
	wait        time.Duration
	lateWorker  bool // the worker runs only once start is called
}

// key is the Braze API key of a group in these tests.
func key(group string) string { return "key-" + group }

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.groups == nil {
		o.groups = map[string]quota.Policy{"default": {Cap: 100, Burst: 10, Period: 24 * time.Hour}}
	}
	ns := natstest.Start(t)
	nc, js := ns.Connect()
	var ws []brazetest.Workspace
	for name, pol := range o.groups {
		ws = append(ws, brazetest.Workspace{Key: key(name), Cap: pol.Cap, Period: pol.Period})
	}
	o.sim.Workspaces = ws
	sim := brazetest.NewServer(o.sim)
	t.Cleanup(sim.Close)
	subj := queue.Subjects{Prefix: "sendid"}
	ctx := context.Background()
	if err := queue.EnsureStreams(ctx, js, queue.StreamSettings{Subjects: subj, Replicas: 1, DuplicateWindow: 2 * time.Minute, Results: true, ResultsMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	b, err := queue.EnsureBuckets(ctx, js, queue.BucketSettings{Replicas: 1, LedgerTTL: time.Hour, JobRecordTTL: time.Hour, PairTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	client, err := braze.New(sim.URL, braze.WithHTTPClient(&http.Client{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	var groups []worker.Group
	var creds []gateway.Credential
	for name, pol := range o.groups {
		groups = append(groups, worker.Group{Name: name, Key: braze.Key(key(name)), Sender: client, Policy: pol})
		creds = append(creds, gateway.Credential{Group: name, Token: config.Secret(key(name))})
		for _, tok := range o.tokens[name] {
			creds = append(creds, gateway.Credential{Group: name, Token: config.Secret(tok)})
		}
	}
	pols := quota.NewPolicies(log)
	ledger := quota.NewKV(b.Ledger, pols, quota.SystemClock{})
	records := queue.NewRecords(b.Jobs, b.Pairs)
	w, err := worker.New(worker.Options{
		NC: nc, JS: js, Subjects: subj, Records: records,
		Publisher: queue.NewPublisher(nc, js, subj, true), Ledger: ledger,
		Pacer: quota.NewPacer(quota.SystemClock{}), Policies: pols, Log: log,
		MaxAttempts: o.maxAttempts, RetryBackoff: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, RecheckInterval: time.Second,
	}, groups)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ns: ns, sim: sim, metrics: gateway.NewMetrics(nil)}
	var once sync.Once
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	e.start = func() {
		once.Do(func() {
			go func() { done <- w.Run(runCtx) }()
			t.Cleanup(func() {
				stop()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("worker: %v", err)
					}
				case <-time.After(15 * time.Second):
					t.Error("worker did not stop within 15s")
				}
			})
			deadline := time.Now().Add(10 * time.Second)
			for w.Ready() != nil {
				if time.Now().After(deadline) {
					t.Fatalf("worker not ready: %v", w.Ready())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	if !o.lateWorker {
		e.start()
	}
	e.gw, err = gateway.New(gateway.Options{
		NC: nc, JS: js, Subjects: subj, Finals: gateway.RecordFinals(records), Usage: ledger,
		Credentials: creds, Listeners: []gateway.Listener{{Addr: "127.0.0.1:0"}}, Log: log, Metrics: e.metrics,
		MaxBodyBytes: 1024, MaxWaiting: o.maxWaiting, Wait: o.wait, StoreTTL: time.Hour,
		ReadHeaderTimeout: o.timeouts, ReadTimeout: o.timeouts, IdleTimeout: o.timeouts, PublishTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.gw.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.gw.Shutdown) // before the worker stops (cleanups run last first)
	e.url = e.gw.URLs()[0]
	return e
}

// reply is one HTTP answer.
type reply struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func (r reply) str(field string) string { s, _ := r.body[field].(string); return s }

// do sends a request; hdr are name, value pairs.
func (e *env) do(method, path, token, body string, hdr ...string) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(data)}
	if err := json.Unmarshal(data, &r.body); err != nil {
		e.t.Fatalf("%s %s: body is not a JSON object: %q", method, path, data)
	}
	return r
}

func (e *env) create(token, body string, hdr ...string) reply {
	e.t.Helper()
	return e.do(http.MethodPost, gateway.CreatePath, token, body, hdr...)
}

func (e *env) wellFormedCalls() int {
	n := 0
	for _, r := range e.sim.Requests() {
		if r.WellFormed {
			n++
		}
	}
	return n
}

func want(t *testing.T, r reply, status int, message string) {
	t.Helper()
	if r.status != status || (message != "" && r.str("message") != message) {
		t.Fatalf("got %d %s, want %d with message %q", r.status, r.raw, status, message)
	}
}

func TestCreated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	r := e.create(key("default"), `{"campaign_id": "campaign_identifier", "send_id": "send_identifier"}`)
	want(t, r, http.StatusCreated, "success")
	if r.str("send_id") != "send_identifier" || len(r.body) != 2 {
		t.Fatalf("body %s, want Braze's {message, send_id}", r.raw)
	}
	if r.header.Get("X-RateLimit-Limit") != "100" || r.header.Get("X-RateLimit-Remaining") == "" || r.header.Get("X-RateLimit-Reset") == "" {
		t.Fatalf("rate-limit headers missing: %v", r.header)
	}
	if r.header.Get("X-Sendid-Duplicate") != "" {
		t.Fatal("a first creation is not a duplicate")
	}
	if n := e.wellFormedCalls(); n != 1 {
		t.Fatalf("simulator saw %d calls, want 1", n)
	}
	// Without send_id, Braze's generated one comes back.
	r = e.create(key("default"), `{"campaign_id": "c2"}`)
	want(t, r, http.StatusCreated, "success")
	if !strings.HasPrefix(r.str("send_id"), "sim-") {
		t.Fatalf("generated send_id: %s", r.raw)
	}
}

// nextUTCMidnight is the start of tomorrow (UTC).
func nextUTCMidnight(now time.Time) time.Time {
	return now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
}

func TestQueuedWhenCapExhausted(t *testing.T) {
	t.Parallel()
	if time.Until(nextUTCMidnight(time.Now())) < time.Minute {
		t.Skip("too close to a UTC day boundary for a cap-per-day scenario")
	}
	e := newEnv(t, envOptions{groups: map[string]quota.Policy{"default": {Cap: 2, Burst: 2, Period: 24 * time.Hour}}})
	for i := range 2 {
		want(t, e.create(key("default"), fmt.Sprintf(`{"campaign_id":"c","send_id":"s%d"}`, i)), http.StatusCreated, "success")
	}
	r := e.create(key("default"), `{"campaign_id":"c","send_id":"s2"}`, "Idempotency-Key", "third")
	want(t, r, http.StatusAccepted, "queued")
	tomorrow := nextUTCMidnight(time.Now())
	if r.str("send_id") != "s2" || r.str("job_id") != "third" || r.header.Get("Location") != "/jobs/third" {
		t.Fatalf("queued answer: %v %s", r.header, r.raw)
	}
	eta, err1 := time.Parse(time.RFC3339, r.str("eta"))
	until, err2 := time.Parse(time.RFC3339, r.str("deferred_until"))
	if err1 != nil || err2 != nil || !until.Equal(tomorrow) || eta.Before(tomorrow) || !eta.Before(tomorrow.Add(24*time.Hour)) {
		t.Fatalf("eta %q deferred_until %q, want both on %s", r.str("eta"), r.str("deferred_until"), tomorrow.Format(time.DateOnly))
	}
	if r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("X-RateLimit-Remaining %q, want 0", r.header.Get("X-RateLimit-Remaining"))
	}
	// GET /jobs/<id> shows the deferred notice meanwhile.
	j := e.do(http.MethodGet, "/jobs/third", key("default"), "")
	if j.status != http.StatusOK || j.str("status") != queue.StatusDeferred || j.str("id") != "third" {
		t.Fatalf("GET /jobs/third: %d %s", j.status, j.raw)
	}
	// Asked for a 429 instead: the job is not kept for tomorrow.
	r = e.create(key("default"), `{"campaign_id":"c","send_id":"s3"}`, "X-Sendid-On-Quota", "reject", "Idempotency-Key", "fourth")
	want(t, r, http.StatusTooManyRequests, "Rate limit exceeded")
	if r.header.Get("X-RateLimit-Reset") != fmt.Sprint(tomorrow.Unix()) {
		t.Fatalf("429 X-RateLimit-Reset %q, want %d", r.header.Get("X-RateLimit-Reset"), tomorrow.Unix())
	}
	if j := e.do(http.MethodGet, "/jobs/fourth", key("default"), ""); j.str("status") != queue.StatusExpired {
		t.Fatalf("the rejected job: %s", j.raw)
	}
	if n := e.wellFormedCalls(); n != 2 {
		t.Fatalf("simulator saw %d calls, want 2", n)
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	k := key("default")
	for _, c := range []struct {
		name, body string
		hdr        []string
		status     int
		mention    string
	}{
		{"campaign_id a number", `{"campaign_id": 42}`, nil, 400, "campaign_id"},
		{"campaign_id missing", `{"send_id": "s"}`, nil, 400, "campaign_id"},
		{"send_id too long", `{"campaign_id": "c", "send_id": "` + strings.Repeat("x", 65) + `"}`, nil, 400, "send_id"},
		{"unknown field", `{"campaign_id": "c", "colour": "red"}`, nil, 400, "colour"},
		{"not JSON", `campaign_id=c`, nil, 400, "JSON object"},
		{"id in the body", `{"campaign_id": "c", "ID": "x"}`, nil, 400, "Idempotency-Key"},
		{"reply_to in the body", `{"campaign_id": "c", "reply_to": "x.y"}`, nil, 400, "reply_to"},
		{"bad wait", `{"campaign_id": "c"}`, []string{"X-Sendid-Wait", "2m"}, 400, "X-Sendid-Wait"},
		{"bad on-quota", `{"campaign_id": "c"}`, []string{"X-Sendid-On-Quota", "maybe"}, 400, "X-Sendid-On-Quota"},
		{"bad idempotency key", `{"campaign_id": "c"}`, []string{"Idempotency-Key", "tab\there"}, 400, "Idempotency-Key"},
		{"form content type", `{"campaign_id": "c"}`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 400, "Content-Type"},
		{"body over the limit", `{"campaign_id": "` + strings.Repeat("c", 2000) + `"}`, nil, 413, "limit"},
	} {
		r := e.create(k, c.body, c.hdr...)
		if r.status != c.status || !strings.Contains(r.str("message"), c.mention) {
			t.Errorf("%s: got %d %s, want %d naming %q", c.name, r.status, r.raw, c.status, c.mention)
		}
	}
	if n := len(e.sim.Requests()); n != 0 {
		t.Fatalf("simulator saw %d calls for bad requests", n)
	}
	if r := e.do(http.MethodGet, gateway.CreatePath, k, ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
		t.Fatalf("GET %s: %d %v", gateway.CreatePath, r.status, r.header)
	}
	want(t, e.do(http.MethodGet, "/users/track", k, ""), http.StatusNotFound, "Not Found")
}

func TestBrazeRejection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{sim: brazetest.Options{Campaigns: []string{"campaign_identifier"}}})
	r := e.create(key("default"), `{"campaign_id": "no_such_campaign", "send_id": "s"}`)
	want(t, r, http.StatusBadRequest, "Invalid Campaign ID")
	if n := len(e.sim.Requests()); n != 1 {
		t.Fatalf("the rejection should come from the simulator: %d calls", n)
	}
}

func TestRetriesExhaustedAndExpired(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxAttempts: 2, sim: brazetest.Options{FailFirst: 5, FailFirstStatus: http.StatusServiceUnavailable}})
	r := e.create(key("default"), `{"campaign_id": "c", "send_id": "flaky"}`)
	if r.status != http.StatusBadGateway || !strings.Contains(r.raw, queue.CodeRetriesExhausted) {
		t.Fatalf("got %d %s, want 502 retries_exhausted", r.status, r.raw)
	}
	r = e.create(key("default"), `{"campaign_id": "c", "send_id": "late", "not_after": "2020-01-01T00:00:00Z"}`)
	if r.status != http.StatusGone || !strings.Contains(r.raw, queue.CodeExpired) {
		t.Fatalf("got %d %s, want 410 expired", r.status, r.raw)
	}
	if n := len(e.sim.Requests()); n != 2 {
		t.Fatalf("simulator saw %d calls, want 2 (the expired job is never called)", n)
	}
}

func TestDuplicatePair(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	body := `{"campaign_id": "campaign_identifier", "send_id": "send_identifier"}`
	first := e.create(key("default"), body)
	want(t, first, http.StatusCreated, "success")
	second := e.create(key("default"), body)
	want(t, second, http.StatusCreated, "success")
	if second.str("send_id") != "send_identifier" || second.header.Get("X-Sendid-Duplicate") != "true" {
		t.Fatalf("duplicate answer: %v %s", second.header, second.raw)
	}
	if n := len(e.sim.Requests()); n != 1 {
		t.Fatalf("simulator saw %d calls, want 1", n)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{
		groups: map[string]quota.Policy{"default": {Cap: 10, Burst: 10, Period: 24 * time.Hour}, "eu": {Cap: 10, Burst: 10, Period: 24 * time.Hour}},
		tokens: map[string][]string{"eu": {"producer-token-eu"}},
	})
	body := `{"campaign_id": "c", "send_id": "s"}`
	for name, token := range map[string]string{"unknown": "sk-not-a-key", "quoted": `"` + key("default") + `"`, "none": ""} {
		r := e.create(token, body)
		if r.status != http.StatusUnauthorized || r.str("message") == "" || strings.Contains(r.raw, token) && token != "" {
			t.Errorf("%s token: %d %s", name, r.status, r.raw)
		}
	}
	// A gateway token acts for its group: the call uses that group's key.
	want(t, e.create("producer-token-eu", body, "Idempotency-Key", "eu-1"), http.StatusCreated, "success")
	reqs := e.sim.Requests()
	if len(reqs) != 1 || reqs[0].Key != key("eu") {
		t.Fatalf("simulator requests %+v, want one with the eu key", reqs)
	}
	// Only the job's own group finds it.
	if r := e.do(http.MethodGet, "/jobs/eu-1", key("eu"), ""); r.status != http.StatusOK || r.str("status") != queue.StatusCreated {
		t.Fatalf("GET with the eu key: %d %s", r.status, r.raw)
	}
	want(t, e.do(http.MethodGet, "/jobs/eu-1", key("default"), ""), http.StatusNotFound, "Not Found")
	want(t, e.do(http.MethodGet, "/jobs/eu-1", "sk-not-a-key", ""), http.StatusUnauthorized, "Invalid API key")
	want(t, e.do(http.MethodGet, "/jobs/never-seen", key("eu"), ""), http.StatusNotFound, "Not Found")
	// Two groups sharing a token cannot be told apart.
	err := e.gw.SetCredentials([]gateway.Credential{{Group: "default", Token: "same"}, {Group: "eu", Token: "same"}})
	if err == nil || strings.Contains(err.Error(), "same") {
		t.Fatalf("shared token: %v", err)
	}
}

func TestIdempotentRetry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	body := `{"campaign_id": "c"}` // Braze generates the send_id: only the job id makes a retry safe
	first := e.create(key("default"), body, "Idempotency-Key", "order-17")
	want(t, first, http.StatusCreated, "success")
	retry := e.create(key("default"), body, "Idempotency-Key", "order-17")
	want(t, retry, http.StatusCreated, "success")
	if retry.str("send_id") != first.str("send_id") || retry.header.Get("X-Sendid-Job-Id") != "order-17" || retry.header.Get("X-Sendid-Duplicate") != "true" {
		t.Fatalf("retry %s %v, first %s", retry.raw, retry.header, first.raw)
	}
	// Retries racing each other are one job too.
	var wg sync.WaitGroup
	got := make([]reply, 4)
	for i := range got {
		wg.Go(func() { got[i] = e.create(key("default"), body, "Idempotency-Key", "order-18") })
	}
	wg.Wait()
	for _, r := range got {
		want(t, r, http.StatusCreated, "success")
		if r.str("send_id") != got[0].str("send_id") {
			t.Fatalf("racing retries got different send IDs: %s vs %s", r.raw, got[0].raw)
		}
	}
	if n := len(e.sim.Requests()); n != 2 {
		t.Fatalf("simulator saw %d calls, want 2 (one per job)", n)
	}
}

// waitUntilPeriodStart sleeps until just after the next multiple of p.
func waitUntilPeriodStart(p time.Duration) {
	now := time.Now()
	time.Sleep(now.Truncate(p).Add(p).Sub(now) + 100*time.Millisecond)
}

func TestJobAfterPeriodTurns(t *testing.T) {
	t.Parallel()
	const period = 4 * time.Second
	e := newEnv(t, envOptions{groups: map[string]quota.Policy{"default": {Cap: 1, Burst: 1, Period: period}}})
	waitUntilPeriodStart(period)
	want(t, e.create(key("default"), `{"campaign_id":"c","send_id":"a"}`), http.StatusCreated, "success")
	r := e.create(key("default"), `{"campaign_id":"c","send_id":"b"}`, "Idempotency-Key", "job-b")
	want(t, r, http.StatusAccepted, "queued")
	if r.str("eta") == "" || r.header.Get("Location") != "/jobs/job-b" {
		t.Fatalf("202 without an ETA or Location: %v %s", r.header, r.raw)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		j := e.do(http.MethodGet, r.header.Get("Location"), key("default"), "")
		if j.status != http.StatusOK {
			t.Fatalf("GET %s: %d %s", r.header.Get("Location"), j.status, j.raw)
		}
		if j.str("status") == queue.StatusCreated {
			if j.str("send_id") != "b" || j.str("id") != "job-b" {
				t.Fatalf("final: %s", j.raw)
			}
			break
		}
		if j.str("status") != queue.StatusDeferred {
			t.Fatalf("before the period turns: %s", j.raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job-b not created 20s after the period turned: %s", j.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := e.wellFormedCalls(); n != 2 {
		t.Fatalf("simulator saw %d calls, want 2", n)
	}
}

func TestWaitingCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxWaiting: 1, wait: 30 * time.Second, lateWorker: true})
	first := make(chan reply, 1)
	go func() {
		first <- e.create(key("default"), `{"campaign_id":"c","send_id":"held"}`)
	}()
	deadline := time.Now().Add(10 * time.Second)
	waiting := func() float64 {
		var m dto.Metric
		_ = e.metrics.Waiting.Write(&m)
		return m.GetGauge().GetValue()
	}
	for waiting() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first request never waited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := e.create(key("default"), `{"campaign_id":"c","send_id":"over"}`)
	want(t, r, http.StatusServiceUnavailable, "")
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %v", r.header)
	}
	e.start() // the worker answers the waiting request
	want(t, <-first, http.StatusCreated, "success")
	if n := len(e.sim.Requests()); n != 1 {
		t.Fatalf("simulator saw %d calls, want 1 (the refused request never became a job)", n)
	}
}

func TestWaitZeroThenJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{lateWorker: true})
	r := e.create(key("default"), `{"campaign_id":"c","send_id":"later"}`, "X-Sendid-Wait", "0s", "Idempotency-Key", "later-1")
	want(t, r, http.StatusAccepted, "queued")
	j := e.do(http.MethodGet, "/jobs/later-1", key("default"), "")
	if j.status != http.StatusOK || j.str("status") != gateway.StatusQueued {
		t.Fatalf("GET before the worker runs: %d %s", j.status, j.raw)
	}
	e.start()
	deadline := time.Now().Add(15 * time.Second)
	for e.do(http.MethodGet, "/jobs/later-1", key("default"), "").str("status") != queue.StatusCreated {
		if time.Now().After(deadline) {
			t.Fatal("job not created")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// 120 requests from 8 concurrent callers against a cap of 100 per day with
// a burst of 100: exactly 100 are created, 20 are queued for tomorrow, and
// Braze sees exactly 100 calls.
func TestConcurrentCallersAtTheCap(t *testing.T) {
	t.Parallel()
	if time.Until(nextUTCMidnight(time.Now())) < 2*time.Minute {
		t.Skip("too close to a UTC day boundary for a cap-per-day scenario")
	}
	e := newEnv(t, envOptions{groups: map[string]quota.Policy{"default": {Cap: 100, Burst: 100, Period: 24 * time.Hour}}})
	var (
		mu    sync.Mutex
		codes = map[int]int{}
		etas  []string
		wg    sync.WaitGroup
	)
	for c := range 8 {
		wg.Go(func() {
			for i := range 15 {
				r := e.create(key("default"), fmt.Sprintf(`{"campaign_id":"campaign_identifier","send_id":"load-%d-%d"}`, c, i))
				mu.Lock()
				codes[r.status]++
				if r.status == http.StatusAccepted {
					etas = append(etas, r.str("eta"))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if codes[http.StatusCreated] != 100 || codes[http.StatusAccepted] != 20 || len(codes) != 2 {
		t.Fatalf("answers %v, want 100 × 201 and 20 × 202", codes)
	}
	tomorrow := nextUTCMidnight(time.Now())
	for _, s := range etas {
		eta, err := time.Parse(time.RFC3339, s)
		if err != nil || eta.Before(tomorrow) || !eta.Before(tomorrow.Add(24*time.Hour)) {
			t.Fatalf("eta %q is not on %s", s, tomorrow.Format(time.DateOnly))
		}
	}
	if n := e.wellFormedCalls(); n != 100 {
		t.Fatalf("simulator saw %d calls, want 100", n)
	}
}

// Slow and idle connections are closed by the server's timeouts: a request
// whose headers never end, a body that trickles, and an idle keep-alive
// connection. (The 10s client deadline only bounds the test: reaching it
// means the server kept the connection.)
func TestSlowAndIdleConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{timeouts: 300 * time.Millisecond})
	addr := strings.TrimPrefix(e.url, "http://")
	auth := "Authorization: Bearer " + key("default") + "\r\n"
	for name, send := range map[string]string{
		"headers never end": "POST /sends/id/create HTTP/1.1\r\nHost: x\r\n",
		"body trickles":     "POST /sends/id/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth + "Content-Length: 100\r\n\r\n{",
		"idle keep-alive":   "GET /jobs/none HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n",
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte(send)); err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(conn) // the answer, if any, then the server's close
		conn.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("%s: the server kept the connection open", name)
		}
	}
}

// With NATS unreachable a request is answered 503 with Retry-After (no job
// is lost: none was taken), and served again once NATS is back.
func TestNATSDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	e.ns.Shutdown()
	r := e.create(key("default"), `{"campaign_id":"c","send_id":"while-down"}`)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("got %d %v %s, want 503 with Retry-After", r.status, r.header, r.raw)
	}
	e.ns.Restart()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r = e.create(key("default"), `{"campaign_id":"c","send_id":"after"}`, "Idempotency-Key", "after-1")
		if r.status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not served after NATS came back: %d %s", r.status, r.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
