package main

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// exported returns every metric sendid-worker exports with its label names,
// from the collectors' descriptions (so a labelled series counts before its
// first event). Histograms add _bucket/_sum/_count and the label le.
func exported(t *testing.T) map[string]map[string]bool {
	t.Helper()
	ms := newMetricSet(func() bool { return true })
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range ms.collectors() {
			c.Describe(ch)
		}
		close(ch)
	}()
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	labels := regexp.MustCompile(`variableLabels: \{([^}]*)\}\}$`)
	out := map[string]map[string]bool{}
	for d := range ch {
		s := d.String()
		n, l := name.FindStringSubmatch(s), labels.FindStringSubmatch(s)
		if n == nil || l == nil {
			t.Fatalf("unexpected metric description %s", s)
		}
		set := map[string]bool{"instance": true, "job": true} // added by Prometheus at scrape
		for _, x := range strings.Split(l[1], ",") {
			if x != "" {
				set[strings.TrimSuffix(strings.TrimPrefix(x, "c("), ")")] = true
			}
		}
		out[n[1]] = set
		if strings.HasSuffix(n[1], "_seconds") && strings.Contains(s, "duration") {
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				hs := map[string]bool{"le": suf == "_bucket"}
				for k := range set {
					hs[k] = true
				}
				out[n[1]+suf] = hs
			}
		}
	}
	return out
}

// promqlWords are the functions, keywords and modifiers the dashboard may
// use besides metric and label names.
var promqlWords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "count": true, "topk": true, "bottomk": true, "quantile": true,
	"rate": true, "irate": true, "increase": true, "delta": true, "histogram_quantile": true, "label_values": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "time": true, "vector": true,
	"clamp_min": true, "clamp_max": true, "max_over_time": true, "min_over_time": true, "avg_over_time": true,
	"absent": true, "changes": true, "resets": true, "timestamp": true,
}

var (
	reStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	reRange     = regexp.MustCompile(`\[[^\]]*\]`)
	reVars      = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
	reMatchers  = regexp.MustCompile(`\{([^}]*)\}`)
	reGrouping  = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	reIdent     = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	reLegendVar = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)
)

// references splits a PromQL expression into the metric names and label
// names it uses. Unknown words are returned as metrics, so a typo fails.
func references(expr string) (metrics, labels []string) {
	e := reStrings.ReplaceAllString(expr, `""`)
	e = reRange.ReplaceAllString(e, "")
	e = reVars.ReplaceAllString(e, "")
	for _, m := range reMatchers.FindAllStringSubmatch(e, -1) {
		for _, pair := range strings.Split(m[1], ",") {
			if n := reIdent.FindString(pair); n != "" {
				labels = append(labels, n)
			}
		}
	}
	e = reMatchers.ReplaceAllString(e, " ")
	for _, m := range reGrouping.FindAllStringSubmatch(e, -1) {
		labels = append(labels, reIdent.FindAllString(m[1], -1)...)
	}
	e = reGrouping.ReplaceAllString(e, " ")
	for _, w := range reIdent.FindAllString(e, -1) {
		if !promqlWords[w] {
			metrics = append(metrics, w)
		}
	}
	return metrics, labels
}

// TestGrafanaDashboardNamesExportedMetrics checks every expression, legend
// and variable of deployments/grafana/sendid.json against the metrics and
// labels the binary exports: renaming a metric or a label fails it.
func TestGrafanaDashboardNamesExportedMetrics(t *testing.T) {
	data, err := os.ReadFile("../../deployments/grafana/sendid.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr   string `json:"expr"`
				Legend string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	exp := exported(t)
	type use struct{ where, expr, legend string }
	var uses []use
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			uses = append(uses, use{p.Title, tg.Expr, tg.Legend})
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			uses = append(uses, use{"variable " + v.Name, strings.NewReplacer("label_values(", "", ")", "").Replace(q["query"].(string)), ""})
		}
	}
	seen := map[string]bool{}
	for _, u := range uses {
		metrics, labels := references(u.expr)
		if v := u.where; strings.HasPrefix(v, "variable ") && len(metrics) == 2 { // label_values(metric, label)
			metrics, labels = metrics[:1], append(labels, metrics[1])
		}
		if len(metrics) == 0 {
			t.Errorf("%s: %q names no metric", u.where, u.expr)
		}
		for _, l := range reLegendVar.FindAllStringSubmatch(u.legend, -1) {
			labels = append(labels, l[1])
		}
		for _, l := range labels {
			ok := false
			for _, m := range metrics {
				ok = ok || exp[m][l]
			}
			if !ok {
				t.Errorf("%s: label %q is not a label of %v", u.where, l, metrics)
			}
		}
		for _, m := range metrics {
			if exp[m] == nil {
				t.Errorf("%s: metric %q is not exported (expression %q)", u.where, m, u.expr)
			}
			seen[m] = true
		}
	}
	var missing []string
	for _, m := range []string{"sendid_quota_used", "sendid_quota_cap", "sendid_quota_remaining", "sendid_backlog",
		"sendid_braze_requests_total", "sendid_braze_request_duration_seconds_bucket", "sendid_lane_paused",
		"sendid_jobs_dead_lettered_total", "sendid_jobs_in_doubt_total", "sendid_nats_connected"} {
		if !seen[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard does not chart %v", missing)
	}
}

func TestReferences(t *testing.T) {
	m, l := references(`histogram_quantile(0.9, sum by (le, app_group) (rate(sendid_x_bucket{app_group=~"$app_group",code!="2{00}"}[$__rate_interval]))) / on(app_group) sendid_cap > 0`)
	if strings.Join(m, ",") != "sendid_x_bucket,sendid_cap" || strings.Join(l, ",") != "app_group,code,le,app_group,app_group" {
		t.Fatalf("metrics %v labels %v", m, l)
	}
}
