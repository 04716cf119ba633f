package queue

import (
	"errors"
	"fmt"
	"strings"
)

// Names of the JetStream assets.
const (
	Stream        = "SENDID"
	ResultsStream = "SENDID_RESULTS"
	LedgerBucket  = "SENDID_LEDGER"
	JobsBucket    = "SENDID_JOBS"
	PairsBucket   = "SENDID_PAIRS"
	AdmissionName = "admission"
)

// DefaultGroup is the group of jobs published to <prefix>.jobs.
const DefaultGroup = "default"

// Subjects is the subject layout under one prefix (default "sendid").
type Subjects struct{ Prefix string }

// Jobs is where upstream publishes a group's jobs.
func (s Subjects) Jobs(group string) string { return s.Prefix + ".jobs." + group }

// Ready is the admitted FIFO of a group.
func (s Subjects) Ready(group string) string { return s.Prefix + ".ready." + group }

// Dead keeps a group's jobs that ran out of attempts.
func (s Subjects) Dead(group string) string { return s.Prefix + ".dead." + group }

// Results is where a group's results go when a job names no reply subject.
func (s Subjects) Results(group string) string { return s.Prefix + ".results." + group }

// LaneConsumer is the durable consumer name of a group's lane.
func LaneConsumer(group string) string { return "lane_" + group }

// GroupOf returns the app group a job subject addresses: the token after
// "<prefix>.jobs.", or DefaultGroup for "<prefix>.jobs" itself.
func (s Subjects) GroupOf(subject string) (string, error) {
	base := s.Prefix + ".jobs"
	if subject == base {
		return DefaultGroup, nil
	}
	g, ok := strings.CutPrefix(subject, base+".")
	if !ok || g == "" || strings.Contains(g, ".") {
		return "", fmt.Errorf("subject %q is not a job subject", subject)
	}
	return g, nil
}

// GroupOfReady is GroupOf for ready and dead subjects.
func (s Subjects) GroupOfReady(subject string) (string, error) {
	for _, kind := range []string{".ready.", ".dead."} {
		if g, ok := strings.CutPrefix(subject, s.Prefix+kind); ok && g != "" && !strings.Contains(g, ".") {
			return g, nil
		}
	}
	return "", fmt.Errorf("subject %q is not a ready or dead subject", subject)
}

// ErrReplyTo is the class of refused reply subjects.
var ErrReplyTo = errors.New("invalid reply subject")

// ReplyRules decides where results may be published. The zero value (with a
// Prefix) applies the built-in rules only.
type ReplyRules struct {
	Subjects
	Allow []string // optional allow-list of subject patterns
}

// Check accepts a valid, wildcard-free subject outside the reserved space:
// nothing starting with '$' (JetStream API, KV, system account) and nothing
// under the worker's own jobs, ready, dead or control subjects (which would
// loop or steer the worker).
func (r ReplyRules) Check(subj string) error {
	if len(subj) == 0 || len(subj) > 255 {
		return fmt.Errorf("%w: must be 1-255 bytes", ErrReplyTo)
	}
	if subj[0] == '$' {
		return fmt.Errorf("%w: %q is in the reserved $ space", ErrReplyTo, subj)
	}
	// NATS's own reply spaces: service-import (_R_) and gateway (_GR_)
	// replies belong to other clients' requests.
	for _, p := range []string{"_R_.", "_GR_."} {
		if strings.HasPrefix(subj, p) || subj == p[:len(p)-1] {
			return fmt.Errorf("%w: %q is in NATS's reserved %s reply space", ErrReplyTo, subj, p[:len(p)-1])
		}
	}
	for i := 0; i < len(subj); i++ {
		c := subj[i]
		if c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: byte %d is a space, control or non-ASCII character", ErrReplyTo, i)
		}
		if c == '*' || c == '>' {
			return fmt.Errorf("%w: %q contains a wildcard", ErrReplyTo, subj)
		}
	}
	for _, tok := range strings.Split(subj, ".") {
		if tok == "" {
			return fmt.Errorf("%w: %q has an empty token", ErrReplyTo, subj)
		}
	}
	for _, own := range []string{".jobs", ".ready", ".dead", ".ctl"} {
		root := r.Prefix + own
		if subj == root || strings.HasPrefix(subj, root+".") {
			return fmt.Errorf("%w: %q is under the worker's own %s subjects", ErrReplyTo, subj, root)
		}
	}
	if len(r.Allow) > 0 {
		for _, pat := range r.Allow {
			if MatchSubject(pat, subj) {
				return nil
			}
		}
		return fmt.Errorf("%w: %q is not in reply_subjects", ErrReplyTo, subj)
	}
	return nil
}

// MatchSubject reports whether subject matches the NATS pattern ('*' one
// token, '>' the rest).
func MatchSubject(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}
