package queue

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Passwords a URL parser cannot read or cuts short.
var hostilePasswords = []string{"pa/ss", "pa#ss", "p@ss/w#rd", "a,b", "x?y=z", "s3cr://et", "plain"}

func TestRedactURLHidesEveryPassword(t *testing.T) {
	t.Parallel()
	for _, pass := range hostilePasswords {
		for _, u := range []string{
			"nats://user:" + pass + "@127.0.0.1:4222",
			"nats://127.0.0.1:4222,nats://user:" + pass + "@10.0.0.2:4222",
			"tls://user:" + pass + "@a:4222,nats://other:" + pass + "@b:4222",
			"user:" + pass + "@host:4222",
		} {
			got := RedactURL(u)
			if strings.Contains(got, pass) || strings.Contains(got, "user") {
				t.Errorf("RedactURL(%q) = %q: shows the user info", u, got)
			}
			if !strings.Contains(got, "[redacted]") {
				t.Errorf("RedactURL(%q) = %q: no redaction marker", u, got)
			}
		}
	}
	for _, u := range []string{"nats://127.0.0.1:4222", "nats://a:4222,nats://b:4222"} {
		if got := RedactURL(u); got != u {
			t.Errorf("RedactURL(%q) = %q: changed a URL without user info", u, got)
		}
	}
	if got := RedactURL("nats://u:p@a:1,nats://b:2"); got != "nats://[redacted]@a:1,nats://b:2" {
		t.Errorf("list: %q", got)
	}
}

// A URL that cannot be parsed ends in an error from nats.go that may quote
// it: Connect's error must still hold no password.
func TestConnectErrorHoldsNoPassword(t *testing.T) {
	t.Parallel()
	for _, pass := range hostilePasswords {
		u := "nats://user:" + pass + "@127.0.0.1:1"
		_, err := Connect(ConnOptions{URL: u, ReconnectWait: 10 * time.Millisecond})
		if err == nil {
			t.Fatalf("%q: connected", u)
		}
		if strings.Contains(err.Error(), pass) {
			t.Errorf("%q: error shows the password: %v", u, err)
		}
	}
}

func TestScrubKeepsTheErrorChain(t *testing.T) {
	t.Parallel()
	inner := &url.Error{Op: "parse", URL: "nats://u:pa/ss@h", Err: errors.New("invalid port")}
	err := scrub(inner, "nats://u:pa/ss@h")
	if strings.Contains(err.Error(), "pa/ss") {
		t.Fatalf("scrubbed text %q", err)
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		t.Fatal("the original error is no longer in the chain")
	}
}
