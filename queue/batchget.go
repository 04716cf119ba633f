package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// maxMultiLast is how many subjects one direct multi-last request may
// match: nats-server answers more with 413 Too Many Results.
const maxMultiLast = 1024

// batchGetTimeout bounds a batch read whose context has no deadline (as
// long as a JetStream API request's default).
const batchGetTimeout = 5 * time.Second

// RecordKey names the records of one job: its record in Group and, when
// SendID is set, its pair's.
type RecordKey struct {
	Group, ID, CampaignID, SendID string
}

// RecordsOf is what a batch read found for one RecordKey. A revision of 0
// means there is no record (never written, deleted or expired); Err is a
// record that could not be decoded (the other one may still be valid).
type RecordsOf struct {
	Job     JobRecord
	JobRev  uint64
	Pair    PairRecord
	PairRev uint64
	JobErr  error
	PairErr error
}

// BatchReader reads the job and pair records of many jobs with one
// JetStream direct-get request per bucket (multi_last, nats-server 2.11 or
// later; the buckets allow direct gets), where Records reads one key per
// request. It reads what Records.Job and Records.Pair read.
type BatchReader struct {
	nc          *nats.Conn
	jobs, pairs string // bucket names
}

// NewBatchReader returns a batch reader over the buckets of r, on nc.
func NewBatchReader(nc *nats.Conn, r *Records) *BatchReader {
	return &BatchReader{nc: nc, jobs: r.jobs.Bucket(), pairs: r.pairs.Bucket()}
}

// Read returns the records of keys, in their order. An error means the
// batch could not be read (the server refused or did not answer in time);
// the caller may read the keys one by one instead.
func (b *BatchReader) Read(ctx context.Context, keys []RecordKey) ([]RecordsOf, error) {
	out := make([]RecordsOf, len(keys))
	jobSubj := make([]string, len(keys))
	var pairSubj []string
	for i, k := range keys {
		jobSubj[i] = kvSubject(b.jobs, jobKey(k.Group, k.ID))
		if k.SendID != "" {
			pairSubj = append(pairSubj, kvSubject(b.pairs, pairKey(k.Group, k.CampaignID, k.SendID)))
		}
	}
	// The two buckets are read concurrently: one wait.
	var (
		pairs   map[string]storedMsg
		pairErr error
		wg      sync.WaitGroup
	)
	wg.Go(func() { pairs, pairErr = b.lastMsgs(ctx, "KV_"+b.pairs, pairSubj) })
	jobs, err := b.lastMsgs(ctx, "KV_"+b.jobs, jobSubj)
	wg.Wait()
	if err != nil {
		return nil, err
	}
	if pairErr != nil {
		return nil, pairErr
	}
	for i, k := range keys {
		o := &out[i]
		if m, ok := jobs[jobSubj[i]]; ok {
			if err := json.Unmarshal(m.data, &o.Job); err != nil {
				o.Job, o.JobErr = JobRecord{}, fmt.Errorf("%s decode %s: %w", b.jobs, jobKey(k.Group, k.ID), err)
			} else {
				o.JobRev = m.seq
			}
		}
		if k.SendID == "" {
			continue
		}
		key := pairKey(k.Group, k.CampaignID, k.SendID)
		if m, ok := pairs[kvSubject(b.pairs, key)]; ok {
			if err := json.Unmarshal(m.data, &o.Pair); err != nil {
				o.Pair, o.PairErr = PairRecord{}, fmt.Errorf("%s decode %s: %w", b.pairs, key, err)
				continue
			}
			o.PairRev = m.seq
			if o.Pair.State == "" { // as Records.Pair reads it
				o.Pair.State = PairCreated
			}
		}
	}
	return out, nil
}

func kvSubject(bucket, key string) string { return "$KV." + bucket + "." + key }

// storedMsg is the last message of one subject.
type storedMsg struct {
	seq  uint64
	data []byte
}

// lastMsgs returns the last message of each of subjects (literal) in
// stream that holds a value, by subject: deleted and purged keys are left
// out, as KeyValue.Get leaves them out.
func (b *BatchReader) lastMsgs(ctx context.Context, stream string, subjects []string) (map[string]storedMsg, error) {
	out := make(map[string]storedMsg, len(subjects))
	if len(subjects) == 0 {
		return out, nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchGetTimeout)
		defer cancel()
	}
	for len(subjects) > 0 {
		chunk := subjects[:min(len(subjects), maxMultiLast)]
		subjects = subjects[len(chunk):]
		if err := b.multiLast(ctx, stream, chunk, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// multiLast makes one direct multi-last request and collects its answers
// into out, until the server's end of batch.
func (b *BatchReader) multiLast(ctx context.Context, stream string, subjects []string, out map[string]storedMsg) error {
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
	}{subjects})
	if err != nil {
		return fmt.Errorf("direct get %s: %w", stream, err)
	}
	inbox := b.nc.NewRespInbox()
	// Every answer is buffered: at most one per subject and the end.
	msgs := make(chan *nats.Msg, len(subjects)+1)
	sub, err := b.nc.ChanSubscribe(inbox, msgs)
	if err != nil {
		return fmt.Errorf("direct get %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := b.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
		return fmt.Errorf("direct get %s: %w", stream, err)
	}
	for got := 0; got <= len(subjects); got++ {
		var m *nats.Msg
		select {
		case m = <-msgs:
		case <-ctx.Done():
			return fmt.Errorf("direct get %s: %w", stream, ctx.Err())
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204": // end of batch
			return nil
		case "404":
			if m.Header.Get("Description") == "No Results" { // none of the subjects holds a message
				return nil
			}
			return fmt.Errorf("direct get %s: status 404 %s", stream, m.Header.Get("Description"))
		case "503":
			return fmt.Errorf("direct get %s: %w", stream, nats.ErrNoResponders)
		default:
			return fmt.Errorf("direct get %s: status %s %s", stream, status, m.Header.Get("Description"))
		}
		subj := m.Header.Get("Nats-Subject")
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if subj == "" || err != nil {
			return fmt.Errorf("direct get %s: answer without subject or sequence", stream)
		}
		switch m.Header.Get("KV-Operation") {
		case "DEL", "PURGE":
			delete(out, subj)
			continue
		}
		out[subj] = storedMsg{seq: seq, data: m.Data}
	}
	return errors.New("direct get " + stream + ": more answers than subjects")
}
