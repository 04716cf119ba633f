package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/worker"
)

func init() {
	register(&command{name: "submit", args: "[--group G] [--campaign C --send-id S --id I --not-after T --meta JSON] [--wait]",
		summary: "submit a job from flags, or a JSON job on stdin; --wait prints its deferred notice and final result", setup: setupSubmit})
	register(&command{name: "quota", args: "[group]",
		summary: "cap, used, remaining, next reset, backlog, pause state and drain ETA per app group", setup: setupQuota})
	register(&command{name: "dead", args: "ls | replay <id>|--all [--reply-to S] | rm <id>|--all",
		summary: "list dead-lettered jobs, send them back through admission, or remove them", setup: setupDead})
	register(&command{name: "pause", args: "<group> [--until RFC3339 | --for DURATION]",
		summary: "stop a group's Braze calls on every replica (without --until or --for: until resumed)", setup: setupPause})
	register(&command{name: "resume", args: "<group>", summary: "end a pause", setup: setupResume})
}

func printJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

// checkGroup refuses a name that cannot be an app group.
func checkGroup(g string) error {
	if !config.ValidGroupName(g) {
		return fmt.Errorf("%w: %q is not an app group name (1-64 characters of a-z, 0-9, _ and -)", errUsage, g)
	}
	return nil
}

func setupSubmit(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	group := fs.String("group", "default", "app group")
	campaign := fs.String("campaign", "", "campaign_id (omit to read a JSON job from stdin)")
	sendID := fs.String("send-id", "", "send_id")
	id := fs.String("id", "", "job id (default: generated)")
	replyTo := fs.String("reply-to", "", "reply subject (ignored with --wait)")
	notAfter := fs.String("not-after", "", "RFC 3339 deadline")
	meta := fs.String("meta", "", "JSON echoed in results")
	wait := fs.Bool("wait", false, "wait for the final result, printing deferred notices as they come")
	return func(ctx context.Context, pos []string) error {
		c := e.conn
		if len(pos) > 0 {
			return fmt.Errorf("%w: submit takes no arguments, only flags (got %q)", errUsage, pos[0])
		}
		if err := checkGroup(*group); err != nil {
			return err
		}
		job := map[string]any{}
		if *campaign == "" {
			data, err := io.ReadAll(io.LimitReader(e.stdin, 1<<20))
			if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			if err := json.Unmarshal(data, &job); err != nil {
				return fmt.Errorf("%w: no --campaign, and stdin is not a JSON job (%v)", errUsage, err)
			}
		} else {
			job["campaign_id"] = *campaign
		}
		set := func(k, v string) {
			if v != "" {
				job[k] = v
			}
		}
		set("send_id", *sendID)
		set("id", *id)
		set("reply_to", *replyTo)
		set("not_after", *notAfter)
		if *meta != "" {
			if !json.Valid([]byte(*meta)) {
				return fmt.Errorf("%w: --meta is not JSON", errUsage)
			}
			job["meta"] = json.RawMessage(*meta)
		}
		if _, ok := job["id"]; !ok {
			job["id"] = nuid.Next()
		}
		jobID := fmt.Sprint(job["id"])
		nc, js, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		var sub *nats.Subscription
		if *wait {
			inbox := nc.NewInbox()
			job["reply_to"] = inbox
			if sub, err = nc.SubscribeSync(inbox); err != nil {
				return fmt.Errorf("subscribe to the reply inbox: %w", err)
			}
		}
		body, err := json.Marshal(job)
		if err != nil {
			return fmt.Errorf("encode the job: %w", err)
		}
		subject := c.subjects().Jobs(*group)
		if *group == queue.DefaultGroup {
			subject = c.prefix + ".jobs"
		}
		pctx, cancel := context.WithTimeout(ctx, c.timeout)
		ack, err := js.PublishMsg(pctx, &nats.Msg{Subject: subject, Data: body, Header: nats.Header{queue.HeaderMsgID: []string{jobID}}})
		cancel()
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("no stream takes %s: no sendid worker has started against this NATS server (or --prefix is wrong)", subject)
		}
		if err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		if !*wait {
			if c.json {
				printJSON(e.stdout, map[string]any{"id": jobID, "subject": subject, "seq": ack.Sequence, "duplicate": ack.Duplicate})
			} else {
				fmt.Fprintf(e.stdout, "submitted job %s to %s (stream sequence %d)\n", jobID, subject, ack.Sequence)
			}
			return nil
		}
		deadline := time.Now().Add(c.timeout)
		for {
			m, err := sub.NextMsg(time.Until(deadline))
			if errors.Is(err, nats.ErrTimeout) {
				return &codedError{exitTimeout, fmt.Errorf("no final result for job %s within %s (it stays queued; sendidctl job %s shows it)", jobID, c.timeout, jobID)}
			}
			if err != nil {
				return fmt.Errorf("wait for the result: %w", err)
			}
			var r queue.Result
			if err := json.Unmarshal(m.Data, &r); err != nil {
				return fmt.Errorf("undecodable result: %w", err)
			}
			if c.json {
				fmt.Fprintln(e.stdout, string(m.Data))
			} else {
				fmt.Fprintln(e.stdout, describe(r))
			}
			switch r.Status {
			case queue.StatusDeferred:
				continue
			case queue.StatusCreated:
				return nil
			case queue.StatusExpired:
				return &codedError{exitExpired, fmt.Errorf("job %s expired", jobID)}
			default:
				return &codedError{exitFailed, fmt.Errorf("job %s failed", jobID)}
			}
		}
	}
}

func describe(r queue.Result) string {
	s := fmt.Sprintf("%s  job %s  app_group %s  campaign %s", r.Status, r.ID, r.AppGroup, r.CampaignID)
	if r.SendID != "" {
		s += "  send_id " + r.SendID
	}
	switch r.Status {
	case queue.StatusDeferred:
		s += fmt.Sprintf("  until %s  eta %s  position %d", r.DeferredUntil.Format(time.RFC3339), r.ETA.Format(time.RFC3339), deref(r.Position))
	case queue.StatusCreated:
		s += fmt.Sprintf("  attempts %d  duplicate %t", r.Attempts, r.Duplicate)
	}
	if r.Error != nil {
		s += fmt.Sprintf("  error %s: %s", r.Error.Code, r.Error.Message)
	}
	return s
}

func deref(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// status asks a worker for every group's status.
func status(c *conn, nc *nats.Conn) ([]worker.GroupStatus, error) {
	subj := c.subjects().QuotaSubject()
	m, err := nc.Request(subj, nil, c.timeout)
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) {
		return nil, fmt.Errorf("no sendid worker answered on %s: is one running with subject prefix %q?", subj, c.prefix)
	}
	if err != nil {
		return nil, fmt.Errorf("ask a worker on %s: %w", subj, err)
	}
	st := []worker.GroupStatus{}
	if err := json.Unmarshal(m.Data, &st); err != nil {
		var werr struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(m.Data, &werr) == nil && werr.Error != "" {
			return nil, fmt.Errorf("the worker could not read the quota: %s", werr.Error)
		}
		return nil, fmt.Errorf("the worker's answer is not a status list: %.200s", m.Data)
	}
	return st, nil
}

func setupQuota(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	return func(ctx context.Context, pos []string) error {
		c := e.conn
		if len(pos) > 1 {
			return fmt.Errorf("%w: quota takes at most one app group", errUsage)
		}
		nc, _, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		st, err := status(c, nc)
		if err != nil {
			return err
		}
		if len(pos) == 1 {
			var kept []worker.GroupStatus
			var names []string
			for _, g := range st {
				names = append(names, g.Group)
				if g.Group == pos[0] {
					kept = append(kept, g)
				}
			}
			if len(kept) == 0 {
				return fmt.Errorf("no app group %q (the workers have: %s)", pos[0], strings.Join(names, ", "))
			}
			st = kept
		}
		if c.json {
			printJSON(e.stdout, st)
			return nil
		}
		now := time.Now()
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "APP GROUP\tCAP\tUSED\tREMAINING\tNEXT RESET\tBACKLOG\tPAUSED\tDRAIN ETA")
		for _, g := range st {
			eta := "-"
			if !g.DrainETA.IsZero() {
				eta = g.DrainETA.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n", g.Group, g.Cap, g.Used, g.Remaining, g.NextReset.UTC().Format(time.RFC3339),
				g.Backlog, pausedColumn(g, now), eta)
		}
		return tw.Flush()
	}
}

// pausedColumn says why and until when a group is paused. A quota pause
// lasts until the ledger frees a slot: the period's reset, or Braze's own
// reset when it said the workspace is spent (the lane looks again every
// few minutes, but that recheck is not when the pause ends).
func pausedColumn(g worker.GroupStatus, now time.Time) string {
	if !g.Paused {
		return "no"
	}
	end := g.PausedUntil
	if g.PauseReason == "quota" {
		end = g.NextReset
		if g.BlockedUntil.After(now) {
			end = g.BlockedUntil
		}
	}
	if queue.PausedUntilResumed(end, now) {
		return g.PauseReason + " until resumed"
	}
	return g.PauseReason + " until " + end.UTC().Format(time.RFC3339)
}

func setupDead(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	all := fs.Bool("all", false, "replay or remove every dead letter")
	replyTo := fs.String("reply-to", "", "replay: send the replayed jobs' results here instead of their original reply subject")
	return func(ctx context.Context, pos []string) error {
		c := e.conn
		if len(pos) == 0 {
			return fmt.Errorf("%w: dead needs ls, replay or rm", errUsage)
		}
		verb := pos[0]
		switch verb {
		case "ls":
			if len(pos) > 1 || *all {
				return fmt.Errorf("%w: dead ls takes no arguments", errUsage)
			}
		case "replay", "rm":
			if (len(pos) == 2) == *all || len(pos) > 2 {
				return fmt.Errorf("%w: dead %s takes one job id or --all", errUsage, verb)
			}
		default:
			return fmt.Errorf("%w: dead %q: the subcommands are ls, replay and rm", errUsage, verb)
		}
		if *replyTo != "" && verb != "replay" {
			return fmt.Errorf("%w: --reply-to goes with dead replay", errUsage)
		}
		nc, js, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		dead, err := queue.ListDead(cctx, js, c.subjects())
		if err != nil {
			return err
		}
		if dead == nil {
			dead = []queue.DeadLetter{}
		}
		if verb == "ls" {
			if c.json {
				printJSON(e.stdout, dead)
				return nil
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tAPP GROUP\tJOB ID\tCAMPAIGN\tSEND ID\tAT\tREASON")
			for _, d := range dead {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Group, d.Job.ID, d.Job.CampaignID, d.Job.SendID, d.At.UTC().Format(time.RFC3339), d.Reason)
			}
			return tw.Flush()
		}
		var chosen []queue.DeadLetter
		for _, d := range dead {
			if *all || d.Job.ID == pos[1] {
				chosen = append(chosen, d)
			}
		}
		if len(chosen) == 0 && !*all {
			return fmt.Errorf("no dead letter with job id %q (sendidctl dead ls lists them)", pos[1])
		}
		done := []string{}
		if verb == "replay" {
			rec, err := queue.OpenRecords(cctx, js)
			if err != nil {
				return err
			}
			for _, d := range chosen {
				if *replyTo != "" {
					d.Job.ReplyTo = *replyTo
				}
				if err := queue.Replay(cctx, js, c.subjects(), rec, d); err != nil {
					return err
				}
				done = append(done, d.Job.ID)
			}
		} else {
			st, err := js.Stream(cctx, queue.Stream)
			if err != nil {
				return err
			}
			for _, d := range chosen {
				if err := st.DeleteMsg(cctx, d.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
					return fmt.Errorf("remove the dead letter of job %s (sequence %d): %w", d.Job.ID, d.Seq, err)
				}
				done = append(done, d.Job.ID)
			}
		}
		past := map[string]string{"replay": "replayed", "rm": "removed"}[verb]
		if c.json {
			printJSON(e.stdout, map[string]any{past: done})
		} else {
			fmt.Fprintf(e.stdout, "%s %d job(s): %s\n", past, len(done), strings.Join(done, ", "))
		}
		return nil
	}
}

func setupPause(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	until := fs.String("until", "", "RFC 3339 end of the pause, in the future")
	forD := fs.Duration("for", 0, "length of the pause, e.g. 2h")
	return func(ctx context.Context, pos []string) error {
		c := e.conn
		if len(pos) != 1 {
			return fmt.Errorf("%w: pause takes one app group", errUsage)
		}
		group := pos[0]
		if err := checkGroup(group); err != nil {
			return err
		}
		now := time.Now()
		var end time.Time
		switch {
		case *until != "" && *forD != 0:
			return fmt.Errorf("%w: --until and --for are alternatives; give one", errUsage)
		case *until != "":
			t, err := time.Parse(time.RFC3339, *until)
			if err != nil {
				return fmt.Errorf("%w: --until %q is not an RFC 3339 time like 2026-11-28T08:00:00Z", errUsage, *until)
			}
			if !t.After(now) {
				return fmt.Errorf("%w: --until %s is in the past; a pause must end in the future", errUsage, *until)
			}
			end = t
		case *forD < 0:
			return fmt.Errorf("%w: --for %s is negative", errUsage, *forD)
		case *forD > 0:
			end = now.Add(*forD)
		default:
			end = queue.UntilResumed(now)
		}
		nc, js, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		if err := queue.PauseLane(cctx, js, c.subjects(), nc, group, end); err != nil {
			return laneError(group, err)
		}
		if err := nc.Flush(); err != nil {
			return fmt.Errorf("pause %s: %w", group, err)
		}
		resumed := queue.PausedUntilResumed(end, now)
		switch {
		case c.json && resumed:
			printJSON(e.stdout, map[string]any{"app_group": group, "paused": true, "until_resumed": true})
		case c.json:
			printJSON(e.stdout, map[string]any{"app_group": group, "paused": true, "until": end.UTC()})
		case resumed:
			fmt.Fprintf(e.stdout, "paused %s until resumed (sendidctl resume %s)\n", group, group)
		default:
			fmt.Fprintf(e.stdout, "paused %s until %s\n", group, end.UTC().Format(time.RFC3339))
		}
		return nil
	}
}

func setupResume(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	return func(ctx context.Context, pos []string) error {
		c := e.conn
		if len(pos) != 1 {
			return fmt.Errorf("%w: resume takes one app group", errUsage)
		}
		group := pos[0]
		if err := checkGroup(group); err != nil {
			return err
		}
		nc, js, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		if err := queue.ResumeLane(cctx, js, c.subjects(), nc, group); err != nil {
			return laneError(group, err)
		}
		if c.json {
			printJSON(e.stdout, map[string]any{"app_group": group, "paused": false})
		} else {
			fmt.Fprintf(e.stdout, "resumed %s\n", group)
		}
		return nil
	}
}

// laneError says in words that a group has no lane consumer.
func laneError(group string, err error) error {
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("no app group %q: no worker has started a lane for it (sendidctl quota lists the groups)", group)
	}
	return err
}
