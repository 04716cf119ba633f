package braze_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/sendid/sendid/braze"
)

// fakeBraze is a RoundTripper standing in for one host that answers on both
// https and http: https redirects to http on the same host.
type fakeBraze struct {
	mu   sync.Mutex
	seen []string // "<scheme> <Authorization>"
}

func (f *fakeBraze) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.seen = append(f.seen, r.URL.Scheme+" "+r.Header.Get("Authorization"))
	f.mu.Unlock()
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	resp := &http.Response{Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Request: r}
	if r.URL.Scheme == "https" {
		resp.StatusCode = http.StatusTemporaryRedirect
		resp.Header.Set("Location", "http://"+r.URL.Host+r.URL.Path)
		resp.Body = io.NopCloser(strings.NewReader(""))
		return resp, nil
	}
	resp.StatusCode = 401
	resp.Body = io.NopCloser(strings.NewReader(`{"message":"Invalid API key"}`))
	return resp, nil
}

// An https→http redirect on the same host must not resend the key in clear
// text.
func TestRedirectToPlainHTTPDropsKey(t *testing.T) {
	t.Parallel()
	f := &fakeBraze{}
	c, err := braze.New("https://rest.iad-01.braze.com", braze.WithHTTPClient(&http.Client{Transport: f}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = call(c)
	var be *braze.Error
	if !errors.As(err, &be) || be.Class != braze.ConfigFault {
		t.Fatalf("err = %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) != 2 {
		t.Fatalf("requests: %q", f.seen)
	}
	if f.seen[0] != "https Bearer "+secret {
		t.Errorf("first request %q: the key belongs on the https call", f.seen[0])
	}
	if f.seen[1] != "http " {
		t.Errorf("redirected plain-http request carried Authorization: %q", f.seen[1])
	}
}

// An echoed key straddling the 256-byte cut of a body snippet is redacted
// first: not one run of 8 key characters survives into the error.
func TestEchoedKeyRedactedBeforeTruncation(t *testing.T) {
	t.Parallel()
	for _, pad := range []int{200, 230, 240, 250, 255} {
		c := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(502)
			// Not JSON: the body itself becomes the message.
			fmt.Fprintf(w, "%s %s", strings.Repeat("x", pad), r.Header.Get("Authorization"))
		})
		_, err := call(c)
		if err == nil {
			t.Fatal("502 succeeded")
		}
		for i := 0; i+8 <= len(secret); i++ {
			if strings.Contains(err.Error(), secret[i:i+8]) {
				t.Fatalf("pad %d: key fragment %q in %q", pad, secret[i:i+8], err)
			}
		}
	}
	// The same inside Braze's "errors" array.
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprintf(w, `{"message":"bad","errors":["%s %s"]}`, strings.Repeat("y", 240), r.Header.Get("Authorization"))
	})
	_, err := c.CreateSendID(context.Background(), secret, braze.CreateSendIDRequest{CampaignID: "c1"})
	for i := 0; i+8 <= len(secret); i++ {
		if strings.Contains(err.Error(), secret[i:i+8]) {
			t.Fatalf("details: key fragment %q in %q", secret[i:i+8], err)
		}
	}
}
