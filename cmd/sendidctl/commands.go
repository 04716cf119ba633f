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

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/worker"
)

// conn holds the connection flags shared by every command.
type conn struct {
	server, creds, nkey, tlsCert, tlsKey, tlsCA, prefix string
	timeout                                             time.Duration
	json                                                bool
}

func newFlags(name string, getenv func(string) string) (*flag.FlagSet, *conn) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &conn{}
	server := getenv("SENDID_NATS_URL")
	if server == "" {
		server = "nats://127.0.0.1:4222"
	}
	prefix := getenv("SENDID_SUBJECT_PREFIX")
	if prefix == "" {
		prefix = "sendid"
	}
	fs.StringVar(&c.server, "server", server, "NATS servers")
	fs.StringVar(&c.creds, "creds", "", "NATS credentials file")
	fs.StringVar(&c.nkey, "nkey", "", "NATS nkey seed file")
	fs.StringVar(&c.tlsCert, "tlscert", "", "TLS client certificate")
	fs.StringVar(&c.tlsKey, "tlskey", "", "TLS client key")
	fs.StringVar(&c.tlsCA, "tlsca", "", "TLS CA certificate")
	fs.StringVar(&c.prefix, "prefix", prefix, "sendid subject prefix")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for NATS (and, with --wait, for the result)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	return fs, c
}

// parse parses flags wherever they stand among the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func (c *conn) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := queue.Connect(queue.ConnOptions{URL: c.server, Name: "sendidctl", CredsFile: c.creds, NKeyFile: c.nkey,
		CAFile: c.tlsCA, CertFile: c.tlsCert, KeyFile: c.tlsKey})
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func (c *conn) subjects() queue.Subjects { return queue.Subjects{Prefix: c.prefix} }

func printJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

func cmdSubmit(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	fs, c := newFlags("submit", getenv)
	group := fs.String("group", "default", "app group")
	campaign := fs.String("campaign", "", "campaign_id (omit to read a JSON job from stdin)")
	sendID := fs.String("send-id", "", "send_id")
	id := fs.String("id", "", "job id (default: generated)")
	replyTo := fs.String("reply-to", "", "reply subject (ignored with --wait)")
	notAfter := fs.String("not-after", "", "RFC 3339 deadline")
	meta := fs.String("meta", "", "JSON echoed in results")
	wait := fs.Bool("wait", false, "wait for the final result, printing deferred notices as they come")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	job := map[string]any{}
	if *campaign == "" {
		data, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &job); err != nil {
			return fmt.Errorf("%w: no --campaign and stdin is not a JSON job: %v", errUsage, err)
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
			return err
		}
	}
	body, err := json.Marshal(job)
	if err != nil {
		return err
	}
	subject := c.subjects().Jobs(*group)
	if *group == queue.DefaultGroup {
		subject = c.prefix + ".jobs"
	}
	pctx, cancel := context.WithTimeout(ctx, c.timeout)
	ack, err := js.PublishMsg(pctx, &nats.Msg{Subject: subject, Data: body, Header: nats.Header{queue.HeaderMsgID: []string{jobID}}})
	cancel()
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	if !*wait {
		if c.json {
			printJSON(stdout, map[string]any{"id": jobID, "subject": subject, "seq": ack.Sequence, "duplicate": ack.Duplicate})
		} else {
			fmt.Fprintf(stdout, "submitted job %s to %s (stream sequence %d)\n", jobID, subject, ack.Sequence)
		}
		return nil
	}
	deadline := time.Now().Add(c.timeout)
	for {
		m, err := sub.NextMsg(time.Until(deadline))
		if errors.Is(err, nats.ErrTimeout) {
			return &codedError{exitTimeout, fmt.Errorf("no final result for job %s within %s", jobID, c.timeout)}
		}
		if err != nil {
			return err
		}
		var r queue.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return fmt.Errorf("undecodable result: %w", err)
		}
		if c.json {
			fmt.Fprintln(stdout, string(m.Data))
		} else {
			fmt.Fprintln(stdout, describe(r))
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

func cmdQuota(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs, c := newFlags("quota", getenv)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return fmt.Errorf("%w: quota takes at most one group", errUsage)
	}
	nc, _, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	m, err := nc.Request(c.subjects().QuotaSubject(), nil, c.timeout)
	if err != nil {
		return fmt.Errorf("no worker answered on %s: %w", c.subjects().QuotaSubject(), err)
	}
	var st []worker.GroupStatus
	if err := json.Unmarshal(m.Data, &st); err != nil {
		return fmt.Errorf("worker answered: %s", m.Data)
	}
	if len(pos) == 1 {
		kept := st[:0]
		for _, g := range st {
			if g.Group == pos[0] {
				kept = append(kept, g)
			}
		}
		if len(kept) == 0 {
			return fmt.Errorf("app group %q is not configured", pos[0])
		}
		st = kept
	}
	if c.json {
		printJSON(stdout, st)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "APP GROUP\tCAP\tUSED\tREMAINING\tNEXT RESET\tBACKLOG\tPAUSED\tDRAIN ETA")
	for _, g := range st {
		paused := "no"
		if g.Paused {
			paused = g.PauseReason + " until " + g.PausedUntil.UTC().Format(time.RFC3339)
		}
		eta := "-"
		if !g.DrainETA.IsZero() {
			eta = g.DrainETA.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%s\t%s\n", g.Group, g.Cap, g.Used, g.Remaining, g.NextReset.Format(time.RFC3339), g.Backlog, paused, eta)
	}
	return tw.Flush()
}

func cmdDead(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs, c := newFlags("dead", getenv)
	all := fs.Bool("all", false, "replay every dead letter")
	replyTo := fs.String("reply-to", "", "send the replayed jobs' results here instead of their original reply subject")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || (pos[0] != "ls" && pos[0] != "replay") {
		return fmt.Errorf("%w: dead ls | dead replay <id>|--all", errUsage)
	}
	if pos[0] == "replay" && (len(pos) == 2) == *all {
		return fmt.Errorf("%w: dead replay takes one job id or --all", errUsage)
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
	if pos[0] == "ls" {
		if c.json {
			printJSON(stdout, dead)
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tAPP GROUP\tJOB ID\tCAMPAIGN\tSEND ID\tAT\tREASON")
		for _, d := range dead {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Seq, d.Group, d.Job.ID, d.Job.CampaignID, d.Job.SendID, d.At.UTC().Format(time.RFC3339), d.Reason)
		}
		return tw.Flush()
	}
	rec, err := queue.OpenRecords(cctx, js)
	if err != nil {
		return err
	}
	var replayed []string
	for _, d := range dead {
		if !*all && d.Job.ID != pos[1] {
			continue
		}
		if *replyTo != "" {
			d.Job.ReplyTo = *replyTo
		}
		if err := queue.Replay(cctx, js, c.subjects(), rec, d); err != nil {
			return err
		}
		replayed = append(replayed, d.Job.ID)
	}
	if len(replayed) == 0 && !*all {
		return fmt.Errorf("no dead letter with job id %q", pos[1])
	}
	if c.json {
		printJSON(stdout, map[string]any{"replayed": replayed})
	} else {
		fmt.Fprintf(stdout, "replayed %d job(s): %s\n", len(replayed), strings.Join(replayed, ", "))
	}
	return nil
}

func cmdPause(ctx context.Context, verb string, args []string, getenv func(string) string, stdout io.Writer) error {
	fs, c := newFlags(verb, getenv)
	until := fs.String("until", "", "RFC 3339 end of the pause (default: until resumed)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: %s <group>", errUsage, verb)
	}
	group := pos[0]
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if verb == "resume" {
		if err := queue.ResumeLane(cctx, js, c.subjects(), nc, group); err != nil {
			return err
		}
		if c.json {
			printJSON(stdout, map[string]any{"app_group": group, "paused": false})
		} else {
			fmt.Fprintf(stdout, "resumed %s\n", group)
		}
		return nil
	}
	t := time.Now().AddDate(100, 0, 0)
	if *until != "" {
		if t, err = time.Parse(time.RFC3339, *until); err != nil {
			return fmt.Errorf("%w: --until: %v", errUsage, err)
		}
	}
	if err := queue.PauseLane(cctx, js, c.subjects(), nc, group, t); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	if c.json {
		printJSON(stdout, map[string]any{"app_group": group, "paused": true, "until": t.UTC()})
	} else {
		fmt.Fprintf(stdout, "paused %s until %s\n", group, t.UTC().Format(time.RFC3339))
	}
	return nil
}
