package deployments_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

const rulesFile = "prometheus/sendid-rules.yaml"

// promQL is the parser the rules are checked with (Prometheus' own).
var promQL = parser.NewParser(parser.Options{})

// loadRules parses a rules file as Prometheus does (strict YAML, every
// expression and template checked).
func loadRules(t *testing.T, data []byte, name string) []rulefmt.Rule {
	t.Helper()
	rgs, errs := rulefmt.Parse(data, false, model.LegacyValidation, promQL, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%s: %v", name, err)
	}
	if rgs == nil {
		t.FailNow()
	}
	var out []rulefmt.Rule
	for _, g := range rgs.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", name)
	}
	return out
}

// sample is one series of a scrape.
type sample struct {
	lset labels.Labels
	v    float64
}

// scrape is one /metrics answer as series (histograms as _bucket, _sum and
// _count, as Prometheus stores them).
type scrape []sample

func parseScrape(t *testing.T, body []byte) scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	var out scrape
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			b := labels.NewBuilder(labels.EmptyLabels())
			for _, l := range m.GetLabel() {
				b.Set(l.GetName(), l.GetValue())
			}
			add := func(suffix string, v float64, extra ...string) {
				lb := labels.NewBuilder(b.Labels())
				lb.Set(labels.MetricName, name+suffix)
				for i := 0; i+1 < len(extra); i += 2 {
					lb.Set(extra[i], extra[i+1])
				}
				out = append(out, sample{lb.Labels(), v})
			}
			switch {
			case m.Counter != nil:
				add("", m.GetCounter().GetValue())
			case m.Gauge != nil:
				add("", m.GetGauge().GetValue())
			case m.Untyped != nil:
				add("", m.GetUntyped().GetValue())
			case m.Histogram != nil:
				h := m.GetHistogram()
				for _, bk := range h.GetBucket() {
					add("_bucket", float64(bk.GetCumulativeCount()), "le", fmt.Sprint(bk.GetUpperBound()))
				}
				add("_bucket", float64(h.GetSampleCount()), "le", "+Inf")
				add("_sum", h.GetSampleSum())
				add("_count", float64(h.GetSampleCount()))
			case m.Summary != nil:
				add("_sum", m.GetSummary().GetSampleSum())
				add("_count", float64(m.GetSummary().GetSampleCount()))
			}
		}
	}
	return out
}

// metricLabels maps each metric name of the scrapes to the label names it
// carries.
func metricLabels(scrapes ...scrape) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, s := range scrapes {
		for _, smp := range s {
			name := smp.lset.Get(labels.MetricName)
			if out[name] == nil {
				out[name] = map[string]bool{}
			}
			smp.lset.Range(func(l labels.Label) {
				if l.Name != labels.MetricName {
					out[name][l.Name] = true
				}
			})
		}
	}
	return out
}

// checkNames reports every metric, matcher label and grouping label of expr
// that the scrapes do not have.
func checkNames(expr string, have map[string]map[string]bool) []string {
	e, err := promQL.ParseExpr(expr)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	// names collects the metrics selected under a node.
	names := func(n parser.Node) []string {
		var out []string
		parser.Inspect(n, func(c parser.Node, _ []parser.Node) error {
			if vs, ok := c.(*parser.VectorSelector); ok {
				out = append(out, vs.Name)
			}
			return nil
		})
		return out
	}
	// grouping checks that each label exists on at least one metric under n.
	grouping := func(n parser.Node, what string, ls []string) {
		for _, l := range ls {
			found := false
			for _, m := range names(n) {
				found = found || have[m][l]
			}
			if !found {
				problems = append(problems, fmt.Sprintf("%s label %q is on none of %v", what, l, names(n)))
			}
		}
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			ls, ok := have[n.Name]
			if !ok {
				problems = append(problems, fmt.Sprintf("metric %s is not exported", n.Name))
				return nil
			}
			for _, m := range n.LabelMatchers {
				if m.Name != labels.MetricName && !ls[m.Name] {
					problems = append(problems, fmt.Sprintf("metric %s has no label %q", n.Name, m.Name))
				}
			}
		case *parser.AggregateExpr:
			grouping(n.Expr, "aggregation", n.Grouping)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil && n.VectorMatching.On {
				grouping(n.LHS, "on()", n.VectorMatching.MatchingLabels)
				grouping(n.RHS, "on()", n.VectorMatching.MatchingLabels)
			}
		}
		return nil
	})
	return problems
}

// series is an in-memory store of timestamped scrapes that the PromQL
// engine queries, with staleness markers like Prometheus writes when a
// series disappears from a scrape.
type series struct {
	lset    labels.Labels
	samples []chunks.Sample
}

type store struct{ by map[string]*series }

type point struct {
	t int64
	f float64
}

func (p point) T() int64                      { return p.t }
func (p point) ST() int64                     { return 0 }
func (p point) F() float64                    { return p.f }
func (p point) H() *histogram.Histogram       { return nil }
func (p point) FH() *histogram.FloatHistogram { return nil }
func (p point) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (p point) Copy() chunks.Sample           { return p }

func newStore(timeline []scrape, start time.Time, step time.Duration) *store {
	s := &store{by: map[string]*series{}}
	for i, sc := range timeline {
		ts := start.Add(time.Duration(i) * step).UnixMilli()
		seen := map[string]bool{}
		for _, smp := range sc {
			k := smp.lset.String()
			seen[k] = true
			se := s.by[k]
			if se == nil {
				se = &series{lset: smp.lset}
				s.by[k] = se
			}
			se.samples = append(se.samples, point{ts, smp.v})
		}
		for k, se := range s.by {
			if last := se.samples[len(se.samples)-1]; !seen[k] && !value.IsStaleNaN(last.F()) {
				se.samples = append(se.samples, point{ts, math.Float64frombits(value.StaleNaN)})
			}
		}
	}
	return s
}

func (s *store) Querier(_, _ int64) (storage.Querier, error) { return s, nil }

func (s *store) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var out []storage.Series
	for _, se := range s.by {
		ok := true
		for _, m := range ms {
			ok = ok && m.Matches(se.lset.Get(m.Name))
		}
		if ok {
			out = append(out, storage.NewListSeries(se.lset, se.samples))
		}
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].Labels(), out[j].Labels()) < 0 })
	return &seriesSet{s: out, i: -1}
}

func (s *store) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (s *store) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (s *store) Close() error { return nil }

type seriesSet struct {
	s []storage.Series
	i int
}

func (x *seriesSet) Next() bool                        { x.i++; return x.i < len(x.s) }
func (x *seriesSet) At() storage.Series                { return x.s[x.i] }
func (x *seriesSet) Err() error                        { return nil }
func (x *seriesSet) Warnings() annotations.Annotations { return nil }

// evalStep is the rule evaluation interval of the scenario: scrape i of a
// timeline is stored at start + i*evalStep.
const evalStep = 30 * time.Second

// hold extends a timeline with copies of its last scrape for d: the state
// it shows lasts that long.
func hold(timeline []scrape, d time.Duration) []scrape {
	out := slices.Clone(timeline)
	for range int(d/evalStep) + 2 {
		out = append(out, timeline[len(timeline)-1])
	}
	return out
}

// evaluate runs every alerting rule over the timeline as Prometheus' rule
// manager does (an alert fires once its expression has returned the series
// for the rule's `for`) and returns, per alert, the app_group values that
// fired at some evaluation ("" for an alert without app_group).
func evaluate(t *testing.T, rules []rulefmt.Rule, timeline []scrape) map[string]map[string]bool {
	t.Helper()
	start := time.Unix(1_800_000_000, 0)
	st := newStore(timeline, start, evalStep)
	eng := promql.NewEngine(promql.EngineOpts{MaxSamples: 1 << 24, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	ctx := context.Background()
	out := map[string]map[string]bool{}
	for _, r := range rules {
		active := map[string]time.Time{}
		for i := range timeline {
			ts := start.Add(time.Duration(i) * evalStep)
			q, err := eng.NewInstantQuery(ctx, st, nil, r.Expr, ts)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert, err)
			}
			vec, err := q.Exec(ctx).Vector()
			if err != nil {
				t.Fatalf("%s at step %d: %v", r.Alert, i, err)
			}
			now := map[string]bool{}
			for _, s := range vec {
				g := s.Metric.Get("app_group")
				now[g] = true
				if _, ok := active[g]; !ok {
					active[g] = ts
				}
				if ts.Sub(active[g]) >= time.Duration(r.For) {
					if out[r.Alert] == nil {
						out[r.Alert] = map[string]bool{}
					}
					out[r.Alert][g] = true
				}
			}
			for g := range active {
				if !now[g] {
					delete(active, g)
				}
			}
			q.Close()
		}
	}
	return out
}

// value sums the series of sc named name whose labels include kv (pairs);
// -1 when there is none.
func (sc scrape) value(name string, kv ...string) float64 {
	sum, found := 0.0, false
	for _, s := range sc {
		ok := s.lset.Get(labels.MetricName) == name
		for i := 0; ok && i+1 < len(kv); i += 2 {
			ok = s.lset.Get(kv[i]) == kv[i+1]
		}
		if ok {
			sum, found = sum+s.v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// stack is a real sendid-worker process against an embedded NATS server and
// two Braze simulators (one healthy, one answering only 5xx).
type stack struct {
	ns   *natstest.Server
	http string
	cmd  *exec.Cmd
}

func startStack(t *testing.T) *stack {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "sendid-worker")
	build := exec.Command("go", "build", "-o", bin, "../cmd/sendid-worker")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	ns := natstest.Start(t)
	good := brazetest.NewServer(brazetest.Options{Workspaces: []brazetest.Workspace{
		{Key: "ok-key"}, {Key: "limited-key", Cap: 10, Used: 10}}})
	t.Cleanup(good.Close)
	failing := brazetest.NewServer(brazetest.Options{ErrorRate: 1})
	t.Cleanup(failing.Close)
	keys := map[string]string{"ok": "ok-key", "bad": "not-a-key", "limited": "limited-key", "flaky": "flaky-key"}
	for name, k := range keys {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(k), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(t))
	cfg := fmt.Sprintf(`nats: {url: %q}
braze: {url: %q, max_attempts: 1, timeout: 5s}
http_addr: %q
log: {level: warn, format: json}
shutdown_timeout: 10s
app_groups:
  ok: {api_key_file: %[4]s/ok, daily_cap: 1, burst: 1}
  badkey: {api_key_file: %[4]s/bad}
  limited: {api_key_file: %[4]s/limited, daily_cap: 10}
  flaky: {braze_url: %q, api_key_file: %[4]s/flaky}
  held: {api_key_file: %[4]s/ok}
`, ns.URL(), good.URL, httpAddr, dir, failing.URL)
	cfgPath := filepath.Join(dir, "sendid.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "worker.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgPath)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("worker log:\n%s", b[max(0, len(b)-6000):])
		}
	})
	s := &stack{ns: ns, http: "http://" + httpAddr, cmd: cmd}
	s.waitScrape(t, "worker ready", func(sc scrape) bool { return sc.value("sendid_ready") == 1 })
	return s
}

func (s *stack) scrape(t *testing.T) (scrape, error) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(s.http + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	return parseScrape(t, b.Bytes()), nil
}

// waitScrape scrapes until ok holds (at most a minute) and returns that scrape.
func (s *stack) waitScrape(t *testing.T, what string, ok func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		sc, err := s.scrape(t)
		if err == nil && ok(sc) {
			return sc
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error %v)", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func publish(t *testing.T, nc interface{ Publish(string, []byte) error }, group, prefix string, n int) {
	t.Helper()
	for i := range n {
		body := fmt.Sprintf(`{"campaign_id":"c","send_id":"%s-%d","id":"%s-%d"}`, prefix, i, prefix, i)
		if err := nc.Publish("sendid.jobs."+group, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
}

func wantFired(t *testing.T, phase string, got map[string]map[string]bool, alert string, groups ...string) {
	t.Helper()
	var g []string
	for k := range got[alert] {
		g = append(g, k)
	}
	sort.Strings(g)
	sort.Strings(groups)
	if !slices.Equal(g, groups) {
		t.Errorf("%s: alert %s fired for app groups %q, want %q", phase, alert, g, groups)
	}
}

// TestAlertRules parses the rules with Prometheus' rule loader, checks each
// metric and label against the real /metrics of sendid-worker, then brings
// about each alert's condition in a running worker and evaluates the rules
// with the PromQL engine over the scrapes: each alert fires for the right
// app group, and none fires while the worker is healthy.
func TestAlertRules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs sendid-worker")
	}
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	rules := loadRules(t, data, rulesFile)
	var maxFor time.Duration
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("rule %q: only alerting rules are expected", r.Record)
		}
		maxFor = max(maxFor, time.Duration(r.For))
	}

	st := startStack(t)
	nc, js := st.ns.Connect()
	s0 := st.waitScrape(t, "a first scrape", func(scrape) bool { return true })
	s0b := st.waitScrape(t, "a second scrape", func(scrape) bool { return true })
	healthy := evaluate(t, rules, hold([]scrape{s0, s0b}, maxFor))
	for alert, groups := range healthy {
		t.Errorf("healthy worker: alert %s fired for %v", alert, groups)
	}

	// Phase 1: each group's trouble.
	publish(t, nc, "ok", "ok", 4)       // cap 1: one created, three wait (backlog 3 > 2 × cap)
	publish(t, nc, "badkey", "bad", 1)  // 401: configuration fault
	publish(t, nc, "limited", "lim", 1) // Braze's workspace is full: 429
	publish(t, nc, "flaky", "flaky", 1) // 5xx with max_attempts 1: dead letter
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := queue.PauseLane(ctx, js, queue.Subjects{Prefix: "sendid"}, nc, "held", time.Now().Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	s1 := st.waitScrape(t, "every group's condition", func(sc scrape) bool {
		return sc.value("sendid_jobs_dead_lettered_total", "app_group", "flaky") >= 1 &&
			sc.value("sendid_braze_config_faults_total", "app_group", "badkey") >= 1 &&
			sc.value("sendid_braze_requests_total", "app_group", "limited", "code", "429") >= 1 &&
			sc.value("sendid_backlog", "app_group", "ok") >= 3 &&
			sc.value("sendid_lane_paused", "app_group", "held", "reason", "operator") == 1
	})
	p1 := evaluate(t, rules, hold([]scrape{s0, s0b, s1}, maxFor))
	wantFired(t, "phase 1", p1, "SendidBrazeConfigFault", "badkey")
	wantFired(t, "phase 1", p1, "SendidDeadLetters", "flaky")
	wantFired(t, "phase 1", p1, "SendidBacklogOverTwoPeriods", "ok")
	wantFired(t, "phase 1", p1, "SendidBrazeRateLimited", "limited")
	wantFired(t, "phase 1", p1, "SendidLanePausedByOperator", "held")
	for _, a := range []string{"SendidNATSDisconnected", "SendidNotReady", "SendidInfraErrors"} {
		wantFired(t, "phase 1", p1, a)
	}

	// An operator's resume shows at the next scrape.
	if err := queue.ResumeLane(ctx, js, queue.Subjects{Prefix: "sendid"}, nc, "held"); err != nil {
		t.Fatal(err)
	}
	st.waitScrape(t, "the operator pause to end", func(sc scrape) bool {
		return sc.value("sendid_lane_paused", "app_group", "held", "reason", "operator") == 0
	})

	// Phase 2: KV trouble. Without the job records bucket every admission
	// is put back and counted as an infrastructure error.
	if err := js.DeleteKeyValue(ctx, queue.JobsBucket); err != nil {
		t.Fatal(err)
	}
	infra0 := max(s1.value("sendid_infra_errors_total"), 0)
	publish(t, nc, "limited", "kv", 12)
	s2 := st.waitScrape(t, "infrastructure errors", func(sc scrape) bool { return sc.value("sendid_infra_errors_total") >= infra0+11 })
	p2 := evaluate(t, rules, hold([]scrape{s0, s0b, s1, s2}, maxFor))
	wantFired(t, "phase 2", p2, "SendidInfraErrors", "")

	// Phase 3: NATS is gone.
	nc.Close()
	st.ns.Shutdown()
	s3 := st.waitScrape(t, "NATS disconnected and not ready", func(sc scrape) bool {
		return sc.value("sendid_nats_connected") == 0 && sc.value("sendid_ready") == 0
	})
	p3 := evaluate(t, rules, hold([]scrape{s0, s0b, s1, s2, s3}, maxFor))
	wantFired(t, "phase 3", p3, "SendidNATSDisconnected", "")
	wantFired(t, "phase 3", p3, "SendidNotReady", "")

	// Every metric and label the rules name is one the binary exports.
	have := metricLabels(s0, s0b, s1, s2, s3)
	for _, r := range rules {
		for _, p := range checkNames(r.Expr, have) {
			t.Errorf("%s: %s", r.Alert, p)
		}
	}
}
