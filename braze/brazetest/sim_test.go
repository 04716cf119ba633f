package brazetest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
)

func client(t *testing.T, url string) *braze.Client {
	t.Helper()
	c, err := braze.New(url)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCapAndReset(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	sim := brazetest.NewServer(brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "k", Cap: 100}}, Now: func() time.Time { return now }})
	t.Cleanup(sim.Close)
	c := client(t, sim.URL)
	for i := range 100 {
		resp, err := c.CreateSendID(context.Background(), "k", braze.CreateSendIDRequest{CampaignID: "c", SendID: fmt.Sprint("s", i)})
		if err != nil || resp.SendID != fmt.Sprint("s", i) {
			t.Fatalf("call %d: %v %+v", i, err, resp)
		}
		if resp.RateLimit.Remaining != 99-i {
			t.Fatalf("remaining = %d after %d", resp.RateLimit.Remaining, i+1)
		}
	}
	_, err := c.CreateSendID(context.Background(), "k", braze.CreateSendIDRequest{CampaignID: "c", SendID: "s100"})
	var be *braze.Error
	if !errors.As(err, &be) || be.Class != braze.RateLimited || be.RateLimit.Remaining != 0 ||
		!be.RateLimit.Reset.Equal(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("101st: %v %+v", err, be)
	}
	// A repeated pair is success without a charge (default RepeatSuccess).
	if _, err := c.CreateSendID(context.Background(), "k", braze.CreateSendIDRequest{CampaignID: "c", SendID: "s5"}); err != nil {
		t.Fatalf("repeat: %v", err)
	}
	now = now.Add(15 * time.Hour) // next UTC day
	if _, err := c.CreateSendID(context.Background(), "k", braze.CreateSendIDRequest{CampaignID: "c", SendID: "s100"}); err != nil {
		t.Fatalf("after reset: %v", err)
	}
	st := sim.Stats()
	if st.Created != 101 || st.OverCap != 1 || st.PairsTwice != 1 || st.Calls != 103 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRequestChecks(t *testing.T) {
	t.Parallel()
	sim := brazetest.NewServer(brazetest.Options{Workspaces: []brazetest.Workspace{{Key: "good"}}, Campaigns: []string{"known"}})
	t.Cleanup(sim.Close)
	for _, tc := range []struct {
		name, method, path, ctype, auth, body string
		want                                  int
	}{
		{"ok", "POST", braze.Path, "application/json", "Bearer good", `{"campaign_id":"known","send_id":"x"}`, 201},
		{"get", "GET", braze.Path, "", "Bearer good", ``, 405},
		{"path", "POST", "/sends/id", "application/json", "Bearer good", `{}`, 404},
		{"no key", "POST", braze.Path, "application/json", "", `{"campaign_id":"known"}`, 401},
		{"quoted key", "POST", braze.Path, "application/json", `Bearer "good"`, `{"campaign_id":"known"}`, 401},
		{"wrong key", "POST", braze.Path, "application/json", "Bearer bad", `{"campaign_id":"known"}`, 401},
		{"ctype", "POST", braze.Path, "text/plain", "Bearer good", `{"campaign_id":"known"}`, 400},
		{"json", "POST", braze.Path, "application/json", "Bearer good", `{`, 400},
		{"no campaign", "POST", braze.Path, "application/json", "Bearer good", `{"send_id":"x"}`, 400},
		{"unknown campaign", "POST", braze.Path, "application/json", "Bearer good", `{"campaign_id":"nope"}`, 400},
		{"long send_id", "POST", braze.Path, "application/json", "Bearer good", `{"campaign_id":"known","send_id":"` + strings.Repeat("x", 65) + `"}`, 400},
	} {
		req, _ := http.NewRequest(tc.method, sim.URL+tc.path, strings.NewReader(tc.body))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	if n := len(sim.Requests()); n != 9 { // wrong path and wrong method are not logged
		t.Errorf("logged %d requests", n)
	}
}

func TestLowerCaseHeadersAndFaults(t *testing.T) {
	t.Parallel()
	sim := brazetest.NewServer(brazetest.Options{LowerCaseHeaders: true, FailFirst: 2})
	t.Cleanup(sim.Close)
	c := client(t, sim.URL)
	req := braze.CreateSendIDRequest{CampaignID: "c", SendID: "s"}
	for i := range 2 {
		_, err := c.CreateSendID(context.Background(), "any", req)
		var be *braze.Error
		if !errors.As(err, &be) || be.Class != braze.Retryable || be.StatusCode != 503 || !be.RateLimit.Known {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	resp, err := c.CreateSendID(context.Background(), "any", req)
	if err != nil || resp.RateLimit.Limit != 100 || resp.RateLimit.Remaining != 99 {
		t.Fatalf("third call: %v %+v", err, resp)
	}
}

func TestGeneratedSendID(t *testing.T) {
	t.Parallel()
	sim := brazetest.NewServer(brazetest.Options{})
	t.Cleanup(sim.Close)
	resp, err := client(t, sim.URL).CreateSendID(context.Background(), "k", braze.CreateSendIDRequest{CampaignID: "c"})
	if err != nil || resp.SendID == "" {
		t.Fatalf("%v %+v", err, resp)
	}
}
