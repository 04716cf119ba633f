package queue

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Job is an upstream request to create one send ID (README: Message contract).
type Job struct {
	CampaignID string          `json:"campaign_id"`
	SendID     string          `json:"send_id,omitempty"`
	ID         string          `json:"id,omitempty"`
	ReplyTo    string          `json:"reply_to,omitempty"`
	NotAfter   *time.Time      `json:"not_after,omitempty"`
	Meta       json.RawMessage `json:"meta,omitempty"`
}

// Limits of the job format.
const (
	MaxIDBytes   = 128
	MaxMetaBytes = 4 << 10
)

// Result statuses.
const (
	StatusCreated  = "created"
	StatusFailed   = "failed"
	StatusExpired  = "expired"
	StatusDeferred = "deferred"
)

// Error codes.
const (
	CodeInvalidJob       = "invalid_job"
	CodeInvalidReplyTo   = "invalid_reply_to"
	CodeUnknownAppGroup  = "unknown_app_group"
	CodeBrazeRejected    = "braze_rejected"
	CodeRetriesExhausted = "retries_exhausted"
	CodeExpired          = "expired"
	// CodeOutcomeUnknown: an earlier call may have reached Braze and the
	// group's in_doubt policy is fail, so no call was made.
	CodeOutcomeUnknown = "outcome_unknown"
)

// JobError is a job refused for its content.
type JobError struct {
	Code    string
	Message string
}

func (e *JobError) Error() string { return e.Code + ": " + e.Message }

func invalid(format string, a ...any) *JobError {
	return &JobError{Code: CodeInvalidJob, Message: fmt.Sprintf(format, a...)}
}

// DecodeJob parses a job body strictly: at most maxBytes, valid UTF-8, one
// JSON object with only the known fields of the right types. It checks the
// format; the identifier rules are the caller's (they belong to braze). When
// the body parsed but breaks a rule, the returned Job still carries what was
// read (reply_to above all) beside the *JobError.
func DecodeJob(data []byte, maxBytes int) (Job, error) {
	var j Job
	if len(data) > maxBytes {
		return j, invalid("body is %d bytes, over the limit of %d", len(data), maxBytes)
	}
	if !utf8.Valid(data) {
		return j, invalid("body is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return j, invalid("body must be a JSON object")
	}
	// wire is Job with send_id as a pointer, so that "send_id": "" is
	// refused rather than read as omitted.
	var wire struct {
		Job
		SendID *string `json:"send_id"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wire); err != nil {
		return looseReplyTo(data), invalid("%s", describeJSONError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return looseReplyTo(data), invalid("unexpected data after the JSON object")
	}
	// From here the body parsed: errors return the job too, so that the
	// answer can still go to its reply_to.
	j = wire.Job
	if wire.SendID != nil {
		if *wire.SendID == "" {
			return j, invalid("send_id must not be empty when present")
		}
		j.SendID = *wire.SendID
	}
	if len(j.ID) > MaxIDBytes || !printableASCII(j.ID) {
		j.ID = ""
		return j, invalid("id must be at most %d bytes of printable ASCII", MaxIDBytes)
	}
	if n := len(j.Meta); n > MaxMetaBytes {
		j.Meta = nil
		return j, invalid("meta is %d bytes, at most %d allowed", n, MaxMetaBytes)
	}
	if bytes.Equal(j.Meta, []byte("null")) {
		j.Meta = nil
	}
	return j, nil
}

// looseReplyTo recovers reply_to from a body that is a JSON object but
// breaks the strict rules (a wrong type elsewhere, an unknown field), so
// that its publisher still hears why.
func looseReplyTo(data []byte) Job {
	var loose struct {
		ReplyTo any `json:"reply_to"`
	}
	if json.Unmarshal(data, &loose) == nil {
		if s, ok := loose.ReplyTo.(string); ok {
			return Job{ReplyTo: s}
		}
	}
	return Job{}
}

func describeJSONError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if f := strings.TrimPrefix(te.Field, "Job."); f != "" {
			return fmt.Sprintf("%s must be %s, not a JSON %s", f, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return "body must be a JSON object"
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return "not_after must be an RFC 3339 time"
	}
	return err.Error()
}

func jsonKind(k string) string {
	if k == "string" {
		return "a string"
	}
	if k == "ptr" || k == "struct" {
		return "an RFC 3339 time string"
	}
	return k
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// ValidID reports whether s can be a job id: 1–128 bytes of printable ASCII.
func ValidID(s string) bool { return s != "" && len(s) <= MaxIDBytes && printableASCII(s) }

// Result is a final result or a deferred notice (README: Message contract).
type Result struct {
	ID            string          `json:"id"`
	AppGroup      string          `json:"app_group"`
	CampaignID    string          `json:"campaign_id,omitempty"`
	SendID        string          `json:"send_id,omitempty"`
	Status        string          `json:"status"`
	Attempts      int             `json:"attempts"`
	Duplicate     bool            `json:"duplicate"`
	Error         *ResultError    `json:"error,omitempty"`
	DeferredUntil *time.Time      `json:"deferred_until,omitempty"`
	ETA           *time.Time      `json:"eta,omitempty"`
	Position      *int            `json:"position,omitempty"`
	Meta          json.RawMessage `json:"meta,omitempty"`
	At            time.Time       `json:"at"`
	// InDoubt: an earlier call for the job may have reached Braze without
	// its answer recorded (README: Crash safety and calls in doubt). Omitted when false.
	InDoubt bool `json:"in_doubt,omitempty"`
}

// ResultError explains a failed or expired job.
type ResultError struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	HTTPStatus int    `json:"http_status,omitempty"`
}

// Final reports whether the result ends the job.
func (r Result) Final() bool { return r.Status != StatusDeferred }
