package config

import (
	"strings"
	"testing"
)

func TestNATSURLErrorHoldsNoPassword(t *testing.T) {
	t.Parallel()
	for _, pass := range []string{"pa/ss", "pa#ss", "a,b:c", "p@ss/w#rd", "x?y"} {
		for _, u := range []string{
			"nats://user:" + pass + "@127.0.0.1:4222",
			"nats://127.0.0.1:4222,nats://user:" + pass + "@10.0.0.2:4222",
		} {
			c := Default()
			c.NATS.URL = u
			err := c.Validate(true)
			if err != nil && strings.Contains(err.Error(), pass) {
				t.Errorf("%q: error shows the password: %v", u, err)
			}
		}
	}
	c := Default()
	c.NATS.URL = "nats://user:pa/ss@127.0.0.1:4222"
	err := c.Validate(true)
	if err == nil || !strings.Contains(err.Error(), "nats.url") || !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("want a nats.url error with the user info redacted, got %v", err)
	}
}
