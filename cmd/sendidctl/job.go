package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/queue"
)

func init() {
	register(&command{name: "job", args: "<id> [--group G]",
		summary: "one job: waiting (with its position), in progress, or its final result, attempts and whether a call was in doubt", setup: setupJob})
}

// jobView is what job prints. InDoubt is read from the record's JSON so
// that it shows whatever the record layer stores.
type jobView struct {
	ID       string        `json:"id"`
	AppGroup string        `json:"app_group"`
	Status   string        `json:"status"`             // waiting, in_progress, or the final status
	Position *int          `json:"position,omitempty"` // waiting: jobs of the group ahead of it (0: next), as in a deferred notice
	Attempts int           `json:"attempts"`
	InDoubt  bool          `json:"in_doubt"`
	Result   *queue.Result `json:"result,omitempty"`
}

// jobRecord reads a job's record through queue.Records, keyed by app
// group and job id.
func jobRecord(ctx context.Context, rec *queue.Records, group, id string) (queue.JobRecord, bool, error) {
	r, rev, err := rec.Job(ctx, group, id)
	if err != nil || rev == 0 || (r.AppGroup != "" && r.AppGroup != group) {
		return queue.JobRecord{}, false, err
	}
	return r, true, nil
}

// inDoubt reads the in_doubt flags of a record (and of its final result)
// from its JSON form.
func inDoubt(r queue.JobRecord) bool {
	b, err := json.Marshal(r)
	if err != nil {
		return false
	}
	var v struct {
		InDoubt bool `json:"in_doubt"`
		Final   *struct {
			InDoubt bool `json:"in_doubt"`
		} `json:"final"`
	}
	if json.Unmarshal(b, &v) != nil {
		return false
	}
	return v.InDoubt || (v.Final != nil && v.Final.InDoubt)
}

func setupJob(fs *flag.FlagSet, e *env) func(context.Context, []string) error {
	group := fs.String("group", queue.DefaultGroup, "the job's app group")
	return func(ctx context.Context, pos []string) error {
		c := e.conn
		if len(pos) != 1 {
			return fmt.Errorf("%w: job takes one job id", errUsage)
		}
		id := pos[0]
		if err := checkGroup(*group); err != nil {
			return err
		}
		nc, js, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		rec, err := queue.OpenRecords(cctx, js)
		if err != nil {
			return err
		}
		r, found, err := jobRecord(cctx, rec, *group, id)
		if err != nil {
			return fmt.Errorf("read the record of job %s: %w", id, err)
		}
		v := jobView{ID: id, AppGroup: *group}
		switch {
		case found && r.Final != nil:
			v.Status, v.Attempts, v.InDoubt, v.Result = r.Final.Status, r.Final.Attempts, inDoubt(r), r.Final
		case found:
			v.Status, v.Attempts, v.InDoubt = "in_progress", r.Attempts, inDoubt(r)
		default:
			// No record yet: the lane has not reached it. Look for it in the
			// group's FIFO.
			ahead, found, err := waitingPosition(cctx, js, c.subjects(), *group, id)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("no job %q in app group %q (not waiting, not worked on, and no result kept)", id, *group)
			}
			v.Status, v.Position = "waiting", &ahead
		}
		if c.json {
			printJSON(e.stdout, v)
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		row := func(k string, val any) { fmt.Fprintf(tw, "%s\t%v\n", k, val) }
		row("job", v.ID)
		row("app group", v.AppGroup)
		row("status", v.Status)
		if v.Position != nil {
			row("position", fmt.Sprintf("%d (jobs of the group ahead of it)", *v.Position))
		}
		row("attempts", v.Attempts)
		row("in doubt", map[bool]string{true: "yes: an earlier call may have reached Braze without its answer being recorded", false: "no"}[v.InDoubt])
		if res := v.Result; res != nil {
			row("campaign", res.CampaignID)
			if res.SendID != "" {
				row("send id", res.SendID)
			}
			if res.Error != nil {
				row("error", res.Error.Code+": "+res.Error.Message)
			}
			row("at", res.At.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	}
}

// waitingPosition finds job id among the group's admitted jobs and says
// how many are ahead of it. It reads the stream by subject, oldest first.
func waitingPosition(ctx context.Context, js jetstream.JetStream, s queue.Subjects, group, id string) (ahead int, found bool, err error) {
	st, err := js.Stream(ctx, queue.Stream)
	if err != nil {
		return 0, false, err
	}
	for seq := uint64(1); ; ahead++ {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(s.Ready(group)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("read the backlog of %s: %w", group, err)
		}
		var j queue.Job
		if json.Unmarshal(m.Data, &j) == nil && j.ID == id {
			return ahead, true, nil
		}
		seq = m.Sequence + 1
	}
}
