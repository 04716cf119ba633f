package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// quotaDay is row h, "quota used on a day with backlog": a simulated Braze
// day of 10 s with a cap of 50 per workspace, three groups (one workspace
// each) with a backlog of 200 jobs each. Every period that has backlog from
// its start to its end must use exactly the cap: calls over it (429s or more
// than 50 charged) and slots left unused are both failures.
func (b *bench) quotaDay(ctx context.Context, backlog int) error {
	const (
		period = 10 * time.Second
		capN   = 50
		burst  = 10
	)
	groups := []string{"qa", "qb", "qc"}
	var ws []brazetest.Workspace
	for _, g := range groups {
		ws = append(ws, brazetest.Workspace{Key: "key-" + g, Cap: capN, Period: period})
	}
	sim := brazetest.NewServer(brazetest.Options{Workspaces: ws})
	defer sim.Close()

	for _, st := range []string{queue.Stream, queue.ResultsStream} {
		_ = b.js.DeleteStream(ctx, st)
	}
	for _, kv := range []string{queue.JobsBucket, queue.PairsBucket} {
		_ = b.js.DeleteKeyValue(ctx, kv)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "subject_prefix: qd\nstreams: {results: false, recheck_interval: 1h}\napp_groups:\n")
	env := []string{"SENDID_NATS_URL=" + b.ns.ClientURL(), "SENDID_BRAZE_URL=" + sim.URL, "SENDID_QUOTA_PERIOD=" + period.String(), "SENDID_LOG_LEVEL=warn"}
	for _, g := range groups {
		name := "BENCH_KEY_" + strings.ToUpper(g)
		fmt.Fprintf(&cfg, "  %s: {api_key_env: %s, daily_cap: %d, burst: %d}\n", g, name, capN, burst)
		env = append(env, name+"=key-"+g)
	}
	path := filepath.Join(b.dir, "qd.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	w := &worker{http: fmt.Sprintf("127.0.0.1:%d", freePort())}
	w.cmd = exec.Command(b.worker)
	w.cmd.Env = append(env, "SENDID_CONFIG="+path, "SENDID_HTTP_ADDR="+w.http)
	var out strings.Builder
	w.cmd.Stdout, w.cmd.Stderr = &out, &out
	if err := w.cmd.Start(); err != nil {
		return err
	}
	defer w.stop()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get("http://" + w.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("row h: worker not ready: %s", out.String())
		}
	}

	res, stop, err := b.collect("bench.qd")
	if err != nil {
		return err
	}
	defer stop()
	n := backlog * len(groups)
	if err := b.publishAsync(func(i int) string { return "qd.jobs." + groups[i%len(groups)] }, func(i int) []byte {
		return fmt.Appendf(nil, `{"campaign_id":"c","send_id":"q%d","reply_to":"bench.qd"}`, i)
	}, n, nil); err != nil {
		return err
	}
	published := time.Now()
	periods := (backlog+capN-1)/capN + 2
	if err := res.wait(ctx, n, time.Duration(periods+3)*period); err != nil {
		b.logf("row h: worker output:\n%s", out.String())
		return fmt.Errorf("row h: %w", err)
	}

	// A period is measured when the backlog was there from its start to its
	// end: it starts after the jobs were published, and the group's jobs
	// were not all created before it ended.
	pol := quota.Policy{Cap: capN, Burst: burst, Period: period}
	st := sim.Stats()
	var used, slots, lost, over int
	var perPeriod []string
	for _, g := range groups {
		created := 0
		starts := []time.Time{}
		byStart := map[time.Time]int{}
		for k, c := range st.CallsPerPeriod {
			key, at, _ := strings.Cut(k, "@")
			if key != "key-"+g {
				continue
			}
			t, err := time.Parse(time.RFC3339, at)
			if err != nil {
				return err
			}
			starts = append(starts, t)
			byStart[t] = c
		}
		sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
		for _, s := range starts {
			c := byStart[s]
			created += c
			if c > capN {
				over += c - capN
			}
			if s.Before(pol.PeriodAt(published).End) || created >= backlog && c < capN {
				continue // partial: started before the backlog, or ran out of it
			}
			used += c
			slots += capN
			lost += max(capN-c, 0)
			perPeriod = append(perPeriod, fmt.Sprint(c))
		}
	}
	over += st.OverCap
	if slots == 0 {
		b.add("h. quota used on a day with backlog", "no full period measured", "100% of the cap, 0 over", false)
		return nil
	}
	pct := 100 * float64(used) / float64(slots)
	b.add(fmt.Sprintf("h. quota used on a day with backlog (cap %d/10 s, %d groups × %d)", capN, len(groups), backlog),
		fmt.Sprintf("%.0f%% (%d of %d slots in %d full periods: %s calls), %d over, %d lost", pct, used, slots, len(perPeriod), strings.Join(perPeriod, "/"), over, lost),
		"100%, 0 over, 0 lost", over == 0 && lost == 0)
	return nil
}
