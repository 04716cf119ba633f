package worker

import (
	"context"
	"errors"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/queue"
)

// UnknownGroupLabel is the app_group label of every group that is not
// configured: subjects are publisher input, and one series per junk name
// would grow the metrics without bound.
const UnknownGroupLabel = "_unknown"

// groupLabel is the metric label for group.
func (w *Worker) groupLabel(group string) string {
	if w.lane(group) == nil {
		return UnknownGroupLabel
	}
	return group
}

// replyRules are the reply-subject rules of group: its own allow-list when
// it has one, else the worker's.
func (w *Worker) replyRules(group string) queue.ReplyRules {
	if l := w.lane(group); l != nil {
		if g := l.settings.Load(); len(g.ReplyAllow) > 0 {
			return queue.ReplyRules{Subjects: w.o.Subjects, Allow: g.ReplyAllow}
		}
	}
	return w.rules
}

// backlogFull refuses a job when ahead jobs already wait in the lane's FIFO
// and that reaches the group's max_backlog.
func backlogFull(l *lane, ahead int) *queue.ResultError {
	g := l.settings.Load()
	if g.MaxBacklog <= 0 || ahead < g.MaxBacklog {
		return nil
	}
	return fail(queue.CodeBacklogFull, "app group %s already has %d jobs waiting (max_backlog %d); publish again later", l.group, ahead, g.MaxBacklog)
}

// refuseFull handles an admission whose publication failed: a full stream
// answers the job backlog_full (it cannot be admitted, and waiting would keep
// the stream full), anything else is retried.
func (a *admission) refuseFull(ctx context.Context, p *pending, err error) {
	if !queue.IsStreamFull(err) {
		a.retryLater(p.msg, "admit", p.res.ID, err)
		return
	}
	res := p.res
	res.Error = fail(queue.CodeBacklogFull, "stream %s is full; publish again later", queue.Stream)
	a.answer(ctx, p.msg, p.dest, res)
}

// checkFields refuses a job whose campaign_id or send_id Braze would
// refuse (admission, and the lane for ready messages).
func checkFields(job queue.Job) *queue.ResultError {
	if err := braze.ValidateCampaignID(job.CampaignID); err != nil {
		return fail(queue.CodeInvalidJob, "campaign_id %v", err)
	}
	if job.SendID != "" {
		if err := braze.ValidateSendID(job.SendID); err != nil {
			return fail(queue.CodeInvalidJob, "send_id %v", err)
		}
	}
	return nil
}

// checkReady checks a message on a group's ready subject as admission
// would have. Only admission publishes there, but the stream captures the
// subject, so anyone allowed to publish under the prefix could try to skip
// admission: with a reply_to that drives the KV or JetStream API, or none
// at all (its result could never be published, and the job would block
// every job behind it). A refused message is answered on the group's
// results subject, never on its own reply_to.
func (w *Worker) checkReady(group string, data []byte) (queue.Job, *queue.ResultError) {
	job, err := queue.DecodeJob(data, w.o.MaxJobBytes)
	if err != nil {
		var je *queue.JobError
		if errors.As(err, &je) {
			return job, &queue.ResultError{Code: je.Code, Message: "not admitted by sendid: " + je.Message}
		}
		return job, fail(queue.CodeInvalidJob, "not admitted by sendid: %v", err)
	}
	switch {
	case job.ID == "":
		return job, fail(queue.CodeInvalidJob, "not admitted by sendid: no id")
	case job.ReplyTo == "":
		return job, fail(queue.CodeInvalidReplyTo, "not admitted by sendid: no reply_to")
	}
	if err := w.replyRules(group).CheckFor(group, job.ReplyTo); err != nil {
		return job, fail(queue.CodeInvalidReplyTo, "not admitted by sendid: %v", err)
	}
	return job, checkFields(job)
}
