package braze_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
)

const secret = "sk-live-very-secret-key-123"

func serve(t *testing.T, h http.HandlerFunc) *braze.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := braze.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func call(c *braze.Client) (braze.CreateSendIDResponse, error) {
	return c.CreateSendID(context.Background(), secret, braze.CreateSendIDRequest{CampaignID: "c1", SendID: "s1"})
}

func TestStatusClasses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		status int
		body   string
		want   braze.Class
	}{
		{400, `{"message":"Invalid Campaign ID","errors":["bad"]}`, braze.Rejected},
		{401, `{"message":"Invalid API key"}`, braze.ConfigFault},
		{403, `{"message":"Access Denied"}`, braze.ConfigFault},
		{404, `not json`, braze.ConfigFault},
		{409, `{"message":"conflict"}`, braze.Rejected},
		{422, `{"message":"nope"}`, braze.Rejected},
		{429, `{"message":"Rate limit exceeded"}`, braze.RateLimited},
		{500, `{"message":"oops"}`, braze.Retryable},
		{502, ``, braze.Retryable},
		{503, `<html>`, braze.Retryable},
		{504, ``, braze.Retryable},
		{200, `{"message":"weird"}`, braze.Retryable},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			t.Parallel()
			c := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-RateLimit-Limit", "100")
				w.Header().Set("X-RateLimit-Remaining", "7")
				w.Header().Set("X-RateLimit-Reset", "1764288000")
				w.WriteHeader(tc.status)
				fmt.Fprint(w, tc.body)
			})
			_, err := call(c)
			var be *braze.Error
			if !errors.As(err, &be) {
				t.Fatalf("err = %v, want *braze.Error", err)
			}
			if be.Class != tc.want {
				t.Fatalf("class = %v, want %v (%v)", be.Class, tc.want, err)
			}
			if !be.RateLimit.Known || be.RateLimit.Remaining != 7 || be.RateLimit.Reset.Unix() != 1764288000 {
				t.Fatalf("rate limit not carried with the error: %+v", be.RateLimit)
			}
			if tc.status == 400 && (be.Message != "Invalid Campaign ID" || len(be.Details) != 1) {
				t.Fatalf("braze message lost: %+v", be)
			}
		})
	}
}

func TestSuccessBodies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, wantID, wantMsg string }{
		{"with send_id", `{"message":"success","send_id":"abc"}`, "abc", "success"},
		{"without send_id", `{"message":"success"}`, "", "success"},
		{"queued", `{"message":"queued"}`, "", "queued"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(201)
				fmt.Fprint(w, tc.body)
			})
			resp, err := call(c)
			if err != nil {
				t.Fatal(err)
			}
			if resp.SendID != tc.wantID || resp.Message != tc.wantMsg || resp.RateLimit.Known {
				t.Fatalf("got %+v", resp)
			}
		})
	}
}

func TestRateLimitHeadersAnyCase(t *testing.T) {
	t.Parallel()
	for _, names := range [][3]string{
		{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"},
		{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"},
		{"X-RATELIMIT-LIMIT", "x-RateLimit-remaining", "X-Ratelimit-Reset"},
	} {
		h := http.Header{}
		h[names[0]] = []string{"250"}
		h[names[1]] = []string{" 3 "}
		h[names[2]] = []string{"1764288000"}
		rl := braze.ParseRateLimit(h)
		if !rl.Known || rl.Limit != 250 || rl.Remaining != 3 || !rl.Reset.Equal(time.Unix(1764288000, 0)) {
			t.Fatalf("%v: got %+v", names, rl)
		}
	}
	if rl := braze.ParseRateLimit(http.Header{"X-Ratelimit-Limit": {"x"}}); rl.Known {
		t.Fatalf("garbage parsed as known: %+v", rl)
	}
}

func TestTimeoutIsRetryable(t *testing.T) {
	t.Parallel()
	sim := brazetest.NewServer(brazetest.Options{HangRate: 1})
	t.Cleanup(sim.Close)
	c, err := braze.New(sim.URL, braze.WithHTTPClient(&http.Client{Timeout: 200 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = call(c)
	var be *braze.Error
	if !errors.As(err, &be) || be.Class != braze.Retryable || be.NotSent {
		t.Fatalf("err = %#v", err)
	}
}

func TestConnectionResetIsRetryable(t *testing.T) {
	t.Parallel()
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	})
	_, err := call(c)
	var be *braze.Error
	if !errors.As(err, &be) || be.Class != braze.Retryable || be.NotSent {
		t.Fatalf("err = %v (%#v)", err, be)
	}
}

func TestConnectionRefusedIsNotSent(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := braze.New("http://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	_, err = call(c)
	var be *braze.Error
	if !errors.As(err, &be) || be.Class != braze.Retryable || !be.NotSent {
		t.Fatalf("err = %v, want retryable and not sent", err)
	}
}

func TestRedirectToAnotherHostDropsKey(t *testing.T) {
	t.Parallel()
	gotAuth := make(chan string, 1)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth <- r.Header.Get("Authorization")
		w.WriteHeader(401)
		fmt.Fprint(w, `{"message":"Invalid API key"}`)
	}))
	t.Cleanup(other.Close)
	// Same IP, different host:port counts as another host.
	target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.Path, http.StatusTemporaryRedirect)
	})
	_, err := call(c)
	if got := <-gotAuth; got != "" {
		t.Fatalf("Authorization forwarded to another host: %q", got)
	}
	var be *braze.Error
	if !errors.As(err, &be) || be.Class != braze.ConfigFault {
		t.Fatalf("err = %v", err)
	}
}

func TestResponseBodyLimit(t *testing.T) {
	t.Parallel()
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		w.Write([]byte(`{"message":"`))
		w.Write([]byte(strings.Repeat("a", braze.MaxResponseBytes+10)))
	})
	_, err := call(c)
	var be *braze.Error
	if !errors.As(err, &be) || !strings.Contains(be.Message, "over") {
		t.Fatalf("err = %v", err)
	}
	if len(err.Error()) > 1024 {
		t.Fatalf("error text is %d bytes", len(err.Error()))
	}
}

func TestBaseURLRules(t *testing.T) {
	t.Parallel()
	for raw, ok := range map[string]bool{
		"https://rest.iad-01.braze.com": true,
		"http://127.0.0.1:9090":         true,
		"http://localhost:9090":         true,
		"http://[::1]:9090":             true,
		"http://rest.iad-01.braze.com":  false,
		"http://10.0.0.1":               false,
		"ftp://x":                       false,
		"https://user:pw@host":          false,
		"":                              false,
	} {
		if _, err := braze.New(raw); (err == nil) != ok {
			t.Errorf("New(%q) err = %v, want ok=%v", raw, err, ok)
		}
	}
}

// TestKeyNeverPrinted fails if the key shows up in any error text or log line
// produced from any outcome, including formatting the key itself.
func TestKeyNeverPrinted(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	statuses := []int{200, 201, 400, 401, 403, 404, 429, 500, 503}
	for _, st := range statuses {
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			// A hostile server echoes the Authorization header back.
			w.WriteHeader(st)
			fmt.Fprintf(w, `{"message":%q,"errors":[%q]}`, r.Header.Get("Authorization"), r.Header.Get("Authorization"))
		})
		_, err := call(c)
		log.Info("outcome", zap.Error(err), zap.Any("key", braze.Key(secret)), zap.Stringer("k", braze.Key(secret)))
		for _, s := range []string{fmt.Sprint(err), fmt.Sprintf("%+v %#v %q %v %s %x", braze.Key(secret), braze.Key(secret), braze.Key(secret), braze.Key(secret), braze.Key(secret), braze.Key(secret))} {
			if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", secret)) {
				t.Fatalf("status %d: key leaked: %s", st, s)
			}
		}
	}
	for _, e := range logs.All() {
		line := fmt.Sprint(e.Message, e.ContextMap())
		if strings.Contains(line, secret) {
			t.Fatalf("key leaked in log line: %s", line)
		}
	}
}
