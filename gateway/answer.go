package gateway

import (
	"net/http"
	"time"

	"github.com/sendid/sendid/queue"
)

// errorBody is Braze's error shape.
type errorBody struct {
	Message string   `json:"message"`
	Errors  []string `json:"errors,omitempty"`
}

// successBody is Braze's answer to a created send ID.
type successBody struct {
	Message string `json:"message"`
	SendID  string `json:"send_id"`
}

// queuedBody is Braze's documented "202 queued", with where the job stands.
type queuedBody struct {
	Message       string     `json:"message"`
	SendID        string     `json:"send_id,omitempty"` // as requested
	JobID         string     `json:"job_id"`
	ETA           *time.Time `json:"eta,omitempty"`
	DeferredUntil *time.Time `json:"deferred_until,omitempty"`
}

// answer is what one HTTP caller gets for its job.
type answer struct {
	status    int
	body      any
	duplicate bool // X-Sendid-Duplicate: true
	rateLimit bool // X-RateLimit-* from the ledger
	location  bool // Location: /jobs/<id>
}

// request is what decides an answer besides the result.
type request struct {
	group, jobID string
	sendID       string // requested, if any
	reject       bool   // X-Sendid-On-Quota: reject
	repeat       bool   // the stream dropped the publication: a job with this id was published already
}

// decide maps a job's result or notice to the HTTP answer, in Braze's
// shapes. It is the only place that does.
func decide(req request, r queue.Result) answer {
	if req.repeat && r.Final() {
		r.Duplicate = true
	}
	switch r.Status {
	case queue.StatusCreated:
		return answer{status: http.StatusCreated, body: successBody{Message: "success", SendID: r.SendID}, duplicate: r.Duplicate, rateLimit: true}
	case queue.StatusDeferred:
		return queued(req, &r)
	}
	code, msg := "", r.Status
	if r.Error != nil {
		code, msg = r.Error.Code, r.Error.Message
	}
	a := answer{duplicate: r.Duplicate, body: errorBody{Message: msg, Errors: []string{code}}}
	switch {
	case r.Status == queue.StatusExpired && req.reject:
		// The gateway set not_after to the end of the quota period: the
		// job could not be created in it, and the caller asked for a 429.
		a.status, a.rateLimit = http.StatusTooManyRequests, true
		a.body = errorBody{Message: "Rate limit exceeded", Errors: []string{code, msg}}
	case r.Status == queue.StatusExpired:
		a.status = http.StatusGone
	case code == queue.CodeInvalidJob:
		a.status = http.StatusBadRequest
	case code == queue.CodeBrazeRejected:
		a.status = r.Error.HTTPStatus
		if a.status < 400 || a.status > 499 {
			a.status = http.StatusBadRequest
		}
	case code == queue.CodeUnknownAppGroup:
		a.status = http.StatusUnauthorized
	case code == queue.CodeInvalidReplyTo:
		a.status = http.StatusInternalServerError
		a.body = errorBody{Message: "the worker refused the gateway's reply subject: reply_subjects must allow _INBOX.>", Errors: []string{code}}
	default: // retries_exhausted, outcome_unknown and codes added later
		a.status = http.StatusBadGateway
	}
	return a
}

// queued is the 202 for a job admitted but not created yet: with its ETA
// when a deferred notice came, without when the wait ran out first.
func queued(req request, notice *queue.Result) answer {
	b := queuedBody{Message: "queued", SendID: req.sendID, JobID: req.jobID}
	if notice != nil {
		b.ETA, b.DeferredUntil = notice.ETA, notice.DeferredUntil
	}
	return answer{status: http.StatusAccepted, body: b, rateLimit: true, location: true}
}
