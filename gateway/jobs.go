package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
)

// job serves GET /jobs/<id>: the job's final result as the worker stored
// it, else the answer the gateway kept (a deferred notice, or "queued"),
// else 404. Only a token of the job's own group finds it.
func (g *Gateway) job(w http.ResponseWriter, r *http.Request) {
	const route = "job"
	group, ok := g.authenticate(r)
	if !ok {
		g.write(w, route, failure(http.StatusUnauthorized, "Invalid API key"), request{})
		return
	}
	id, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), JobsPath))
	if err != nil || !queue.ValidID(id) {
		g.write(w, route, failure(http.StatusNotFound, "Not Found"), request{})
		return
	}
	req := request{group: group, jobID: id}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	res, found, err := g.o.Finals.Final(ctx, group, id)
	if err == nil && !found {
		res, found, err = g.recall(ctx, jobKey(group, id))
	}
	if err != nil {
		g.log.Warn("gateway cannot read a job's answer", zap.String("app_group", group), zap.String("job_id", id), zap.Error(err))
		w.Header().Set("Retry-After", "1")
		g.write(w, route, failure(http.StatusServiceUnavailable, "sendid is not reachable right now; retry shortly"), req)
		return
	}
	if !found {
		g.write(w, route, failure(http.StatusNotFound, "Not Found"), req)
		return
	}
	res.ID = id // an unparsable body's answer carries the gateway's message id
	g.write(w, route, answer{status: http.StatusOK, body: res}, req)
}
