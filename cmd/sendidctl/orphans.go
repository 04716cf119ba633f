package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"

	"github.com/sendid/sendid/worker"
)

func init() {
	register(&command{name: "orphans", args: "[fail <group>]",
		summary: "jobs waiting for app groups no longer configured; fail answers a group's failed / unknown_app_group and removes them", setup: setupOrphans})
}

// setupOrphans lists the jobs admitted for app groups no longer configured
// (`orphans`), or answers one group's failed / unknown_app_group and
// removes them (`orphans fail <group>`). A running worker does the work: it
// knows which groups are configured and refuses to fail a configured one's.
func setupOrphans(_ *flag.FlagSet, e *env) func(context.Context, []string) error {
	return func(ctx context.Context, pos []string) error {
		c := e.conn
		subject, body := worker.OrphansSubject(c.subjects()), []byte(nil)
		switch {
		case len(pos) == 0:
		case len(pos) == 2 && pos[0] == "fail":
			if err := checkGroup(pos[1]); err != nil {
				return err
			}
			subject = worker.OrphansFailSubject(c.subjects())
			body, _ = json.Marshal(worker.OrphansFailRequest{Group: pos[1]})
		default:
			return fmt.Errorf("%w: orphans takes no argument, or: fail <group>", errUsage)
		}
		nc, _, err := c.connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		rctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		m, err := nc.RequestWithContext(rctx, subject, body)
		if err != nil {
			return fmt.Errorf("no worker answered on %s: %w", subject, err)
		}
		var r worker.OrphansReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return fmt.Errorf("worker answered: %s", m.Data)
		}
		if c.json {
			printJSON(e.stdout, r)
		} else {
			if len(pos) == 2 {
				fmt.Fprintf(e.stdout, "%d job(s) of app group %s answered failed / unknown_app_group\n", r.Failed, pos[1])
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "APP GROUP\tJOBS")
			for _, o := range r.Orphans {
				fmt.Fprintf(tw, "%s\t%d\n", o.Group, o.Jobs)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		if r.Error != "" {
			return fmt.Errorf("worker: %s", r.Error)
		}
		return nil
	}
}
