package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/config"
)

// TestLaneFailover: default, file, environment and the bounds.
func TestLaneFailover(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml, env string
		want            time.Duration
		problem         bool
	}{
		{name: "default", want: 5 * time.Second},
		{name: "file", yaml: "lane_failover: 12s\n", want: 12 * time.Second},
		{name: "env wins", yaml: "lane_failover: 12s\n", env: "3s", want: 3 * time.Second},
		{name: "too short", env: "500ms", problem: true},
		{name: "too long", yaml: "lane_failover: 10m\n", problem: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tc.yaml), env(map[string]string{"SENDID_LANE_FAILOVER": tc.env, "SENDID_BRAZE_URL": "https://rest.iad-01.braze.com"}))
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate(false)
			if tc.problem {
				var ce *config.Error
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), "lane_failover (SENDID_LANE_FAILOVER)") {
					t.Fatalf("err = %v, want a problem naming lane_failover", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.LaneFailover != tc.want {
				t.Fatalf("lane_failover %s, want %s", c.LaneFailover, tc.want)
			}
		})
	}
	if _, err := config.Parse(nil, env(map[string]string{"SENDID_LANE_FAILOVER": "soon"})); err == nil || !strings.Contains(err.Error(), "SENDID_LANE_FAILOVER") {
		t.Fatalf("bad duration: %v", err)
	}
}
