package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// JobRecord is the durable state of one job id.
type JobRecord struct {
	ID       string `json:"id"`
	AppGroup string `json:"app_group"`
	// Owner is the stream sequence of the ready message being worked on;
	// another message with the same id waits until the owner finishes.
	Owner    uint64  `json:"owner"`
	Attempts int     `json:"attempts"`
	Final    *Result `json:"final,omitempty"`
}

// PairRecord remembers a created (campaign_id, send_id) pair of a group.
type PairRecord struct {
	JobID  string    `json:"job_id"`
	SendID string    `json:"send_id"` // as Braze returned it
	At     time.Time `json:"at"`
}

// ErrConflict is a compare-and-swap that lost to another writer.
var ErrConflict = errors.New("record changed concurrently")

// Records stores job and pair records in their KV buckets, keyed by hash so
// that any printable id is a safe key.
type Records struct {
	jobs, pairs jetstream.KeyValue
}

// NewRecords returns a store over the two buckets.
func NewRecords(jobs, pairs jetstream.KeyValue) *Records { return &Records{jobs: jobs, pairs: pairs} }

func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:20])
}

// Job returns the record of id and its revision (0 when there is none).
func (r *Records) Job(ctx context.Context, id string) (JobRecord, uint64, error) {
	var rec JobRecord
	rev, err := get(ctx, r.jobs, hashKey(id), &rec)
	return rec, rev, err
}

// PutJob writes rec if the stored revision is still rev (0: must not exist).
// It returns the new revision, or ErrConflict.
func (r *Records) PutJob(ctx context.Context, rec JobRecord, rev uint64) (uint64, error) {
	return put(ctx, r.jobs, hashKey(rec.ID), rec, rev)
}

// Pair returns the record of a created pair, if any.
func (r *Records) Pair(ctx context.Context, group, campaignID, sendID string) (PairRecord, bool, error) {
	var rec PairRecord
	rev, err := get(ctx, r.pairs, hashKey(group, campaignID, sendID), &rec)
	return rec, rev != 0, err
}

// PutPair records a created pair (last writer wins; both writers saw the
// same creation).
func (r *Records) PutPair(ctx context.Context, group, campaignID, sendID string, rec PairRecord) error {
	data, _ := json.Marshal(rec)
	if _, err := r.pairs.Put(ctx, hashKey(group, campaignID, sendID), data); err != nil {
		return fmt.Errorf("pair record: %w", err)
	}
	return nil
}

func get(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%s get: %w", kv.Bucket(), err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("%s decode %s: %w", kv.Bucket(), key, err)
	}
	return e.Revision(), nil
}

func put(ctx context.Context, kv jetstream.KeyValue, key string, v any, rev uint64) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	var n uint64
	if rev == 0 {
		n, err = kv.Create(ctx, key, data)
	} else {
		n, err = kv.Update(ctx, key, data, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("%s put: %w", kv.Bucket(), err)
	}
	return n, nil
}
