package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
)

// Request headers of the gateway (besides Braze's own).
const (
	HeaderWait           = "X-Sendid-Wait"     // 0s..60s: how long to wait for the result
	HeaderOnQuota        = "X-Sendid-On-Quota" // "reject": 429 instead of 202 when the period's quota is spent
	HeaderIdempotencyKey = "Idempotency-Key"   // the job id: a retry is the same job
)

// maxWait is the longest X-Sendid-Wait.
const maxWait = 60 * time.Second

// options reads the gateway's request headers; an error names the header.
func (g *Gateway) options(r *http.Request) (wait time.Duration, reject bool, id string, err error) {
	wait = g.o.Wait
	if v := strings.TrimSpace(r.Header.Get(HeaderWait)); v != "" {
		d, perr := time.ParseDuration(v)
		if perr != nil || d < 0 || d > maxWait {
			return 0, false, "", fmt.Errorf("%s: %q must be a duration from 0s to 60s", HeaderWait, v)
		}
		wait = d
	}
	// The answer must leave before the server's write deadline.
	wait = min(wait, max(g.o.WriteTimeout-time.Second, 0))
	switch v := strings.ToLower(strings.TrimSpace(r.Header.Get(HeaderOnQuota))); v {
	case "", "queue":
	case "reject":
		reject = true
	default:
		return 0, false, "", fmt.Errorf("%s: %q must be queue or reject", HeaderOnQuota, v)
	}
	if v := r.Header.Get(HeaderIdempotencyKey); v != "" {
		if !queue.ValidID(v) {
			return 0, false, "", fmt.Errorf("%s must be 1-%d bytes of printable ASCII", HeaderIdempotencyKey, queue.MaxIDBytes)
		}
		id = v
	} else {
		id = "gw-" + rand.Text()
	}
	return wait, reject, id, nil
}

// create serves POST /sends/id/create: one job, answered when its result
// comes or its wait runs out.
func (g *Gateway) create(w http.ResponseWriter, r *http.Request) {
	const route = "create"
	group, ok := g.authenticate(r)
	if !ok {
		g.write(w, route, failure(http.StatusUnauthorized, "Invalid API key"), request{})
		return
	}
	wait, reject, id, err := g.options(r)
	if err != nil {
		g.write(w, route, failure(http.StatusBadRequest, err.Error()), request{})
		return
	}
	req := request{group: group, jobID: id, reject: reject}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		g.write(w, route, failure(http.StatusBadRequest, "Content-Type must be application/json"), req)
		return
	}
	select {
	case g.slots <- struct{}{}:
		defer func() { <-g.slots }()
	default:
		w.Header().Set("Retry-After", "1")
		g.write(w, route, failure(http.StatusServiceUnavailable, "Too many requests waiting; retry shortly"), req)
		return
	}
	g.o.Metrics.Waiting.Inc()
	defer g.o.Metrics.Waiting.Dec()

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(g.o.MaxBodyBytes)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			g.write(w, route, failure(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over the limit of %d bytes", g.o.MaxBodyBytes)), req)
			return
		}
		g.write(w, route, failure(http.StatusBadRequest, "request body could not be read"), req)
		return
	}
	var notAfter *time.Time
	if reject {
		// The worker's own expiry rule turns "not this period" into an
		// expired job (answered 429) instead of a deferred one.
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		u, err := g.o.Usage.Usage(ctx, group)
		cancel()
		if err != nil {
			g.unavailable(w, route, req, "quota usage", err)
			return
		}
		end := u.PeriodEnd
		notAfter = &end
	}
	key := jobKey(group, id)
	msg, sendID, err := g.message(group, id, key, body, notAfter)
	if err != nil {
		g.write(w, route, failure(http.StatusBadRequest, err.Error()), req)
		return
	}
	req.sendID = sendID
	if len(msg.Data) > g.o.MaxBodyBytes {
		g.write(w, route, failure(http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body with the gateway's fields is over the limit of %d bytes", g.o.MaxBodyBytes)), req)
		return
	}

	ch := g.waiters.add(key)
	defer g.waiters.remove(key, ch)
	pctx, cancel := context.WithTimeout(r.Context(), g.o.PublishTimeout)
	ack, err := g.o.JS.PublishMsg(pctx, msg)
	cancel()
	if err != nil {
		g.unavailable(w, route, req, "publish", err)
		return
	}
	if ack.Duplicate {
		// The same job was published moments ago (a retry): its answer
		// may be stored already; else it arrives like any other. Either
		// way this request made no Braze call (ARCHITECTURE §7.6).
		req.repeat = true
		if res, found, err := g.o.Finals.Final(r.Context(), group, id); err == nil && found {
			g.write(w, route, decide(req, res), req)
			return
		}
	}

	timeout := g.o.Clock.After(wait)
	select {
	case res := <-ch:
		g.answer(r.Context(), w, route, req, key, res)
		return
	case <-timeout:
	case <-g.quit:
	case <-r.Context().Done():
	}
	g.waiters.remove(key, ch)
	// From here answers arriving on the inbox are stored by onAnswer.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	select {
	case res := <-ch: // arrived while the wait ended
		g.answer(ctx, w, route, req, key, res)
	default:
		g.remember(ctx, key, queue.Result{ID: id, AppGroup: group, SendID: sendID, Status: StatusQueued, At: g.o.Clock.Now().UTC()}, true)
		if r.Context().Err() == nil { // else the caller left: the job runs all the same
			g.write(w, route, queued(req, nil), req)
		}
	}
}

// answer writes the answer to a result or notice. Answers the worker keeps
// no job record of are stored first, so that GET /jobs/<id> finds them as
// soon as the caller has read its answer: notices, and results given
// without a Braze call (admission's refusals, expiries and duplicate pairs).
func (g *Gateway) answer(ctx context.Context, w http.ResponseWriter, route string, req request, key string, res queue.Result) {
	if res.Status == queue.StatusDeferred || res.Attempts == 0 {
		g.remember(ctx, key, res, false)
	}
	g.write(w, route, decide(req, res), req)
}

func (g *Gateway) unavailable(w http.ResponseWriter, route string, req request, stage string, err error) {
	g.log.Warn("gateway cannot reach NATS", zap.String("stage", stage), zap.String("app_group", req.group), zap.Error(err))
	w.Header().Set("Retry-After", "1")
	g.write(w, route, failure(http.StatusServiceUnavailable, "sendid is not reachable right now; retry shortly"), req)
}

// message builds the job: the caller's body with the gateway's id and
// reply_to (and, for X-Sendid-On-Quota: reject, not_after) added. A body
// that is not a JSON object is published unchanged, id and reply subject in
// headers, for the worker to refuse with its own words. sendID is the
// send_id the body asks for, if any.
func (g *Gateway) message(group, id, key string, body []byte, notAfter *time.Time) (*nats.Msg, string, error) {
	msg := &nats.Msg{Subject: g.o.Subjects.Jobs(group), Data: body, Header: nats.Header{}}
	reply := g.inbox + "." + key
	// Nats-Msg-Id: the stream drops a retry published within its duplicate
	// window; scoped by group so that two groups' keys never collide.
	msg.Header.Set(queue.HeaderMsgID, "gw-"+key)
	var obj map[string]json.RawMessage
	if !utf8.Valid(body) || json.Unmarshal(body, &obj) != nil || obj == nil {
		msg.Header.Set(queue.HeaderReplyTo, reply)
		return msg, "", nil
	}
	sendID := ""
	for k, v := range obj {
		switch {
		case strings.EqualFold(k, "id"):
			return nil, "", errors.New("id is not accepted: send the job id as the Idempotency-Key header")
		case strings.EqualFold(k, "reply_to"):
			return nil, "", errors.New("reply_to is not accepted: the answer comes back on this request")
		case strings.EqualFold(k, "send_id"):
			_ = json.Unmarshal(v, &sendID)
		case strings.EqualFold(k, "not_after") && notAfter != nil:
			var t time.Time
			if json.Unmarshal(v, &t) == nil && !t.Before(*notAfter) {
				delete(obj, k) // replaced by the period's end below
			} else {
				notAfter = nil // earlier, or unreadable: the worker judges it
			}
		}
	}
	enc := func(v any) json.RawMessage { b, _ := json.Marshal(v); return b }
	obj["id"], obj["reply_to"] = enc(id), enc(reply)
	if notAfter != nil {
		obj["not_after"] = enc(notAfter.UTC().Format(time.RFC3339Nano))
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, "", fmt.Errorf("request body: %w", err)
	}
	msg.Data = data
	return msg, sendID, nil
}
