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

// JobRecord is the durable state of one job id in one app group. Written
// with compare-and-swap, it is also the reservation of a job without a
// send_id: the owner writes it before every call.
type JobRecord struct {
	ID       string `json:"id"`
	AppGroup string `json:"app_group"`
	// Owner is the stream sequence of the ready message working on the id.
	// Another message with the same id waits while that message exists, and
	// takes the id over once it is gone (acked, purged, below the stream's
	// first sequence).
	Owner    uint64 `json:"owner"`
	Attempts int    `json:"attempts"` // Braze calls made, whatever their answer
	// Failures counts the retryable failures (5xx, timeouts, connection
	// errors): the only answers max_attempts limits.
	Failures int `json:"failures,omitempty"`
	// Calling is the attempt whose call is open: written before the call,
	// cleared once its answer is recorded. Found set by a redelivery, it
	// means that call may have reached Braze without its answer recorded.
	Calling int `json:"calling,omitempty"`
	// InDoubt: an earlier call for the job may have reached Braze without
	// its answer recorded; the final result says so.
	InDoubt bool    `json:"in_doubt,omitempty"`
	Final   *Result `json:"final,omitempty"`
}

// Pair record states: a pair is reserved (calling) before the call that may
// create it, and marked created once Braze said so.
const (
	PairCalling = "calling"
	PairCreated = "created"
)

// PairRecord is the state of one (campaign_id, send_id) pair of a group.
type PairRecord struct {
	// State is PairCalling or PairCreated. Records written before pairs had
	// states only ever recorded creations and read as PairCreated.
	State string `json:"state,omitempty"`
	JobID string `json:"job_id"`
	// Seq is the ready message holding a calling reservation, Attempt the
	// owner's attempts when it reserved.
	Seq     uint64    `json:"seq,omitempty"`
	Attempt int       `json:"attempt,omitempty"`
	SendID  string    `json:"send_id,omitempty"` // created: as Braze returned it
	At      time.Time `json:"at"`
}

// Created reports whether the pair was created.
func (p PairRecord) Created() bool { return p.State == PairCreated }

// ErrConflict is a compare-and-swap that lost to another writer.
var ErrConflict = errors.New("record changed concurrently")

// Records stores job and pair records in their KV buckets, keyed by a hash
// of the app group and the job id (or the pair), so that any printable id
// is a safe key and no group ever reads another group's record.
//
// Job records written before they were keyed by group (a hash of the id
// alone) are not read: they could belong to any group. They expire with the
// bucket's TTL (streams.job_record_ttl); pair keys always included the
// group and are read as before.
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

// jobKey scopes a job id by its group. Ids are printable ASCII, so the
// NUL separators make (group, id) → key one-to-one, and no new key equals
// an old one (hash of the id alone, one separator).
func jobKey(group, id string) string { return hashKey(group, id) }

func pairKey(group, campaignID, sendID string) string { return hashKey(group, campaignID, sendID) }

// Job returns the record of id in group and its revision (0 when there is
// none).
func (r *Records) Job(ctx context.Context, group, id string) (JobRecord, uint64, error) {
	var rec JobRecord
	rev, err := get(ctx, r.jobs, jobKey(group, id), &rec)
	return rec, rev, err
}

// PutJob writes rec (keyed by rec.AppGroup and rec.ID) if the stored
// revision is still rev (0: must not exist). It returns the new revision,
// or ErrConflict.
func (r *Records) PutJob(ctx context.Context, rec JobRecord, rev uint64) (uint64, error) {
	if rec.AppGroup == "" || rec.ID == "" {
		return 0, errors.New("job record without app group or id")
	}
	return put(ctx, r.jobs, jobKey(rec.AppGroup, rec.ID), rec, rev)
}

// DeleteJob forgets a job id's record in group.
func (r *Records) DeleteJob(ctx context.Context, group, id string) error {
	if err := r.jobs.Delete(ctx, jobKey(group, id)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete job record: %w", err)
	}
	return nil
}

// Pair returns a pair's record and its revision (0 when there is none).
func (r *Records) Pair(ctx context.Context, group, campaignID, sendID string) (PairRecord, uint64, error) {
	var rec PairRecord
	rev, err := get(ctx, r.pairs, pairKey(group, campaignID, sendID), &rec)
	if rev != 0 && rec.State == "" {
		rec.State = PairCreated
	}
	return rec, rev, err
}

// PutPair writes a pair's record if the stored revision is still rev (0:
// must not exist). It returns the new revision, or ErrConflict.
func (r *Records) PutPair(ctx context.Context, group, campaignID, sendID string, rec PairRecord, rev uint64) (uint64, error) {
	return put(ctx, r.pairs, pairKey(group, campaignID, sendID), rec, rev)
}

// PairCreated records that Braze created the pair, whatever the record
// held: the creation is the truth, and a reservation taken over meanwhile
// must not hide it.
func (r *Records) PairCreated(ctx context.Context, group, campaignID, sendID string, rec PairRecord) error {
	rec.State = PairCreated
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("pair record: %w", err)
	}
	if _, err := r.pairs.Put(ctx, pairKey(group, campaignID, sendID), data); err != nil {
		return fmt.Errorf("pair record: %w", err)
	}
	return nil
}

// DropPair removes a pair's reservation if it is still at revision rev;
// ErrConflict when another writer changed it.
func (r *Records) DropPair(ctx context.Context, group, campaignID, sendID string, rev uint64) error {
	err := r.pairs.Delete(ctx, pairKey(group, campaignID, sendID), jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSequence(err) {
		return ErrConflict
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%s delete: %w", r.pairs.Bucket(), err)
	}
	return nil
}

// isWrongLastSequence matches the server's answer to a delete whose
// expected revision is stale.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// MessageExists reports whether stream SENDID still holds the message at
// seq: a ready message is removed once acked or terminated, by a purge, or
// by limits (then its sequence is below the stream's first). One direct
// read, so deciding that a record's owner is gone costs one round trip.
func MessageExists(ctx context.Context, js jetstream.JetStream, seq uint64) (bool, error) {
	if seq == 0 {
		return false, nil // no message has sequence 0
	}
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", Stream, err)
	}
	if _, err := st.GetMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil
		}
		return false, fmt.Errorf("stream %s message %d: %w", Stream, seq, err)
	}
	return true, nil
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
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSequence(err) {
		return 0, ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("%s put: %w", kv.Bucket(), err)
	}
	return n, nil
}

// DropJob removes a job record if it is still at revision rev: the undo of
// a record created for a call that never started. ErrConflict when another
// writer changed it.
func (r *Records) DropJob(ctx context.Context, group, id string, rev uint64) error {
	err := r.jobs.Delete(ctx, jobKey(group, id), jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) || isWrongLastSequence(err) {
		return ErrConflict
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%s delete: %w", r.jobs.Bucket(), err)
	}
	return nil
}
