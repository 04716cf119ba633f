package config

import (
	"fmt"
	"sort"
	"time"
)

// The in_doubt policies of an app group (README: Crash safety and calls in doubt).
const (
	InDoubtRetry = "retry" // call again; the result says in_doubt: true
	InDoubtFail  = "fail"  // make no call; the job ends failed / outcome_unknown
)

// consumersAckWait is the AckWait the admission and lane consumers run with
// under c: lane_failover (queue.EnsureAdmission, queue.EnsureLane). A
// message not acked within it is delivered again.
func (c *Config) consumersAckWait() time.Duration { return c.LaneFailover }

// callProblems checks the settings that decide whether a call or a job can
// happen twice: the in_doubt policies, the stream's duplicate window
// against the consumers' AckWait, and the Braze timeout against the
// shutdown bound.
func (c *Config) callProblems() []string {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	names := make([]string, 0, len(c.AppGroups))
	for n := range c.AppGroups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch v := c.AppGroups[n].InDoubt; v {
		case "", InDoubtRetry, InDoubtFail:
		default:
			src := ""
			if n == DefaultGroup {
				src = " (SENDID_IN_DOUBT)"
			}
			add("app_groups.%s.in_doubt%s: %q is not retry or fail", n, src, v)
		}
	}
	if w, ack := c.Streams.DuplicateWindow, c.consumersAckWait(); w > 0 && w < ack {
		add("streams.duplicate_window: %s is shorter than the consumers' AckWait (%s): a job redelivered after the window would be admitted twice", w, ack)
	}
	if c.Braze.Timeout > 0 && c.Shutdown > 0 && c.Braze.Timeout >= c.Shutdown {
		add("braze.timeout (SENDID_BRAZE_TIMEOUT, %s) must be shorter than shutdown_timeout (SENDID_SHUTDOWN_TIMEOUT, %s): a call still running when the shutdown bound ends is cut, and a cut call is in doubt (it may have created the pair without its answer being recorded)",
			c.Braze.Timeout, c.Shutdown)
	}
	return p
}
