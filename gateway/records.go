package gateway

import (
	"context"

	"github.com/sendid/sendid/queue"
)

// RecordFinals reads final results from the worker's job records
// (queue.Records), only for jobs of the asking group.
func RecordFinals(r *queue.Records) Finals { return recordFinals{r} }

type recordFinals struct{ r *queue.Records }

func (f recordFinals) Final(ctx context.Context, group, id string) (queue.Result, bool, error) {
	rec, _, err := f.r.Job(ctx, group, id)
	if err != nil || rec.Final == nil || rec.AppGroup != group {
		return queue.Result{}, false, err
	}
	return *rec.Final, true, nil
}
