package worker

import "fmt"

// InDoubtPolicy is what a job does when an earlier call for it may have
// reached Braze without its answer recorded (README: Crash safety and calls in doubt).
type InDoubtPolicy int

const (
	// InDoubtRetry calls again; the final result says in_doubt: true.
	InDoubtRetry InDoubtPolicy = iota
	// InDoubtFail makes no call and ends the job failed / outcome_unknown.
	InDoubtFail
)

func (p InDoubtPolicy) String() string {
	if p == InDoubtFail {
		return "fail"
	}
	return "retry"
}

// ParseInDoubt reads the in_doubt setting: "retry" (or empty) or "fail".
func ParseInDoubt(s string) (InDoubtPolicy, error) {
	switch s {
	case "", "retry":
		return InDoubtRetry, nil
	case "fail":
		return InDoubtFail, nil
	}
	return InDoubtRetry, fmt.Errorf("in_doubt %q is not retry or fail", s)
}
