package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/worker"
)

// chromium finds Debian's Chromium. Without it the browser test is skipped
// on a developer's machine and fails in CI (.ci/run installs it).
func chromium(t *testing.T) string {
	for _, p := range []string{os.Getenv("SENDID_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium: .ci/run installs it with apt-get")
	}
	t.Skip("no chromium at /usr/bin/chromium (apt-get install chromium); the browser test runs in CI")
	return ""
}

// TestOperatorPageInABrowser drives /ui with headless Chromium: three groups
// (exhausted, paused by an operator, config fault) on embedded NATS and the
// simulator; the numbers in the DOM equal `sendidctl quota --json`; with the
// admin token a pause and a resume go through the page to the consumer;
// without it there is no button and a forged POST gets 403.
func TestOperatorPageInABrowser(t *testing.T) {
	exe := chromium(t)
	const (
		admin   = "ui-admin-token-0123456789"
		keyEx   = "key-exhausted-0123456789"
		keyPa   = "key-paused-0123456789"
		keyBad  = "key-wrong-0123456789"
		resultS = "ui.results"
	)
	ns := natstest.Start(t)
	sim := brazetest.NewServer(brazetest.Options{Workspaces: []brazetest.Workspace{{Key: keyEx, Cap: 2}, {Key: keyPa}}})
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "sendid.yaml")
	yaml := fmt.Sprintf(`braze:
  url: %s
ui:
  actions: true
app_groups:
  exhausted: {api_key_env: KEY_EX, daily_cap: 2, burst: 2}
  paused:    {api_key_env: KEY_PA, daily_cap: 100, timezone: Europe/Berlin}
  fault:     {api_key_env: KEY_BAD, daily_cap: 100}
`, sim.URL)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, map[string]string{"SENDID_NATS_URL": ns.URL(), "SENDID_CONFIG": cfgPath, "SENDID_ADMIN_TOKEN": admin,
		"KEY_EX": keyEx, "KEY_PA": keyPa, "KEY_BAD": keyBad})
	waitFor(t, "ready", 20*time.Second, func() bool { return d.status("/readyz") == 200 })

	ctl := filepath.Join(dir, "sendidctl")
	if out, err := exec.Command("go", "build", "-o", ctl, "../sendidctl").CombinedOutput(); err != nil {
		t.Fatalf("build sendidctl: %v\n%s", err, out)
	}
	sendidctl := func(args ...string) []byte {
		t.Helper()
		out, err := exec.Command(ctl, append(args, "--server", ns.URL())...).Output()
		if err != nil {
			t.Fatalf("sendidctl %v: %v", args, err)
		}
		return out
	}

	// The three states: two jobs use up "exhausted", one more waits; a job
	// of "fault" meets a 401; "paused" is paused by an operator.
	nc, js := ns.Connect()
	res := subscribe(t, nc, resultS)
	for i, g := range []string{"exhausted", "exhausted", "exhausted", "fault"} {
		body := fmt.Sprintf(`{"campaign_id":"c","send_id":"s-%d","reply_to":%q}`, i, resultS)
		if err := nc.Publish("sendid.jobs."+g, []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	sendidctl("pause", "paused", "--until", time.Now().Add(time.Hour).UTC().Format(time.RFC3339))
	waitFor(t, "the three states", 20*time.Second, func() bool {
		var st []worker.GroupStatus
		_ = json.Unmarshal(sendidctl("quota", "--json"), &st)
		ok := 0
		for _, s := range st {
			switch {
			case s.Group == "exhausted" && s.Remaining == 0 && s.Backlog == 1,
				s.Group == "paused" && s.Paused,
				s.Group == "fault" && s.PauseReason == "config_fault":
				ok++
			}
		}
		return ok == 3 && res.finals() == 2
	})

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1400, 900))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(browser, 90*time.Second)
	defer cancel()

	type domRow struct{ Group, Used, Cap, Remaining, Backlog, State string }
	read := func() map[string]domRow {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Navigate(d.http+"/ui"), chromedp.WaitVisible(`tr[data-group="fault"]`)); err != nil {
			t.Fatalf("open /ui: %v", err)
		}
		rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]domRow](`[...document.querySelectorAll("tr[data-group]")].map(tr => ({
				Group: tr.dataset.group,
				Used: tr.querySelector(".used").dataset.value, Cap: tr.querySelector(".cap").dataset.value,
				Remaining: tr.querySelector(".remaining").dataset.value, Backlog: tr.querySelector(".backlog").dataset.value,
				State: tr.querySelector(".state").dataset.value}))`))
		if err != nil {
			t.Fatalf("read /ui: %v", err)
		}
		out := map[string]domRow{}
		for _, r := range rows {
			out[r.Group] = r
		}
		return out
	}

	// 1. The page's numbers are sendidctl's.
	dom := read()
	var st []worker.GroupStatus
	if err := json.Unmarshal(sendidctl("quota", "--json"), &st); err != nil {
		t.Fatal(err)
	}
	if len(dom) != 3 || len(st) != 3 {
		t.Fatalf("page shows %d groups, sendidctl %d", len(dom), len(st))
	}
	wantState := map[string]string{"exhausted": "exhausted", "paused": "paused", "fault": "config fault"}
	for _, s := range st {
		r := dom[s.Group]
		got := []string{r.Used, r.Cap, r.Remaining, r.Backlog}
		want := []string{fmt.Sprint(s.Used), fmt.Sprint(s.Cap), fmt.Sprint(s.Remaining), fmt.Sprint(s.Backlog)}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: page used/cap/remaining/backlog %v, sendidctl %v", s.Group, got, want)
		}
		if r.State != wantState[s.Group] {
			t.Errorf("%s: page state %q, want %q", s.Group, r.State, wantState[s.Group])
		}
	}

	// 2. Without the token: no button, and a forged POST is refused.
	buttons, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("button.pause, button.resume").length`))
	if err != nil {
		t.Fatal(err)
	}
	if buttons != 0 {
		t.Errorf("%d action buttons without the token", buttons)
	}
	resp, err := http.PostForm(d.http+"/ui/groups/exhausted/pause", url.Values{"for": {"1h"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged pause: %d, want 403", resp.StatusCode)
	}
	laneInfo := func(g string) bool {
		info, err := js.Consumer(context.Background(), queue.Stream, queue.LaneConsumer(g))
		if err != nil {
			t.Fatal(err)
		}
		ci, err := info.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return ci.Paused
	}
	if laneInfo("exhausted") {
		t.Fatal("the forged POST paused the lane")
	}

	// 3. With the token: pause "exhausted" on the page, see it paused on the
	// page and on the server, then resume it.
	state := func() string {
		a, err := chromedp.Run(ctx, chromedp.AttributeValue(`tr[data-group="exhausted"] td.state`, "data-value"))
		if err != nil {
			t.Fatal(err)
		}
		return a.Value
	}
	for i, step := range []chromedp.Action[chromedp.Void]{
		chromedp.SendKeys(`input[name="token"]`, admin),
		chromedp.Click(`#unlock`),
		chromedp.WaitVisible(`tr[data-group="exhausted"] button.pause`),
		chromedp.SetValue(`tr[data-group="exhausted"] input.for`, "2h"),
		chromedp.Click(`tr[data-group="exhausted"] button.pause`),
		chromedp.WaitVisible(`tr[data-group="exhausted"] button.resume`),
	} {
		sctx, scancel := context.WithTimeout(ctx, 15*time.Second)
		err := chromedp.Do(sctx, step)
		scancel()
		if err != nil {
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Fatalf("pause through the page, step %d: %v\n%s", i, err, page)
		}
	}
	if s := state(); s != "paused" {
		t.Errorf("after pause the page says %q", s)
	}
	if !laneInfo("exhausted") {
		t.Error("the page's pause did not pause the consumer")
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(t.TempDir(), "ui.png")
	if err := os.WriteFile(png, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of /ui: %s (%d bytes)", png, len(shot))
	if err := chromedp.Do(ctx,
		chromedp.Click(`tr[data-group="exhausted"] button.resume`),
		chromedp.WaitVisible(`tr[data-group="exhausted"] button.pause`),
	); err != nil {
		t.Fatalf("resume through the page: %v", err)
	}
	if s := state(); s != "exhausted" {
		t.Errorf("after resume the page says %q", s)
	}
	if laneInfo("exhausted") {
		t.Error("the page's resume did not resume the consumer")
	}
}
