package queue

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SecretsBucket holds the deployment's id secret (key "ids"): one random
// value, created by the first worker to start and read by every other. It
// has no TTL: the ids derived from it must stay the same for a redelivery.
const SecretsBucket = "SENDID_SECRETS"

const idsKey = "ids"

// IDs derives the identifiers sendid makes up itself from a secret that
// publishers never see: default job ids, and the Nats-Msg-Ids of its own
// publications into stream SENDID (admitted jobs, dead letters). Publishers
// share that stream's duplicate window, so ids they could compute would let
// them suppress sendid's messages; these cannot be guessed, and the same
// input always gives the same id, so a redelivery is still de-duplicated.
type IDs struct {
	secret []byte
	epoch  int64 // stream SENDID's creation: a recreated stream restarts its sequences
}

// NewIDs returns the scheme for secret (at least 16 bytes) and the creation
// time of stream SENDID.
func NewIDs(secret []byte, streamCreated time.Time) (IDs, error) {
	if len(secret) < 16 {
		return IDs{}, errors.New("id secret: at least 16 bytes are required")
	}
	return IDs{secret: append([]byte(nil), secret...), epoch: streamCreated.UnixNano()}, nil
}

// RandomIDs is a scheme with a fresh secret, for a single process (tests):
// workers sharing a stream need LoadIDs.
func RandomIDs() IDs {
	s := make([]byte, 32)
	_, _ = rand.Read(s) // crypto/rand.Read never fails (Go ≥ 1.24)
	return IDs{secret: s}
}

func (x IDs) mac(kind string, seq uint64, parts ...string) string {
	if len(x.secret) == 0 {
		panic("queue: IDs used without a secret")
	}
	m := hmac.New(sha256.New, x.secret)
	var n [16]byte
	binary.BigEndian.PutUint64(n[:8], uint64(x.epoch))
	binary.BigEndian.PutUint64(n[8:], seq)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write(n[:])
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil)[:16])
}

// Job is the default id of the job stored at stream sequence seq (a job
// with neither an id field nor a Nats-Msg-Id): "SENDID-" and 32 hex digits.
func (x IDs) Job(seq uint64) string { return Stream + "-" + x.mac("job", seq) }

// Ready is the Nats-Msg-Id admitting job id of group, read from the job
// message at stream sequence seq.
func (x IDs) Ready(group, id string, seq uint64) string {
	return "ready-" + x.mac("ready", seq, group, id)
}

// Dead is the Nats-Msg-Id of job id's dead letter in group.
func (x IDs) Dead(group, id string) string { return "dead-" + x.mac("dead", 0, group, id) }

// LoadIDs returns the deployment's id scheme: the secret in SecretsBucket
// (created with a random value by the first caller; later callers read it)
// and the creation time of stream SENDID. Call it after EnsureStreams.
func LoadIDs(ctx context.Context, js jetstream.JetStream, replicas int) (IDs, error) {
	var kv jetstream.KeyValue
	if err := retry(ctx, func() (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: SecretsBucket,
			Description: "sendid deployment secret for the ids it derives", History: 1, Storage: jetstream.FileStorage, Replicas: replicas})
		return err
	}); err != nil {
		return IDs{}, fmt.Errorf("kv bucket %s: %w", SecretsBucket, err)
	}
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	var secret []byte
	if err := retry(ctx, func() error {
		_, err := kv.Create(ctx, idsKey, []byte(hex.EncodeToString(fresh)))
		if err == nil {
			secret = fresh
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return err
		}
		e, err := kv.Get(ctx, idsKey)
		if err != nil {
			return err
		}
		secret, err = hex.DecodeString(string(e.Value()))
		return err
	}); err != nil {
		return IDs{}, fmt.Errorf("id secret: %w", err)
	}
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return IDs{}, fmt.Errorf("stream %s: %w", Stream, err)
	}
	return NewIDs(secret, st.CachedInfo().Created)
}

// jsErrStoreFailed is JSStreamStoreFailedF, which carries "maximum bytes
// exceeded" and "maximum messages exceeded".
const jsErrStoreFailed jetstream.ErrorCode = 10077

// jsErrStorageExceeded is JSStorageResourcesExceededErr: a stream's
// MaxBytes does not fit the account's or the server's storage.
const jsErrStorageExceeded jetstream.ErrorCode = 10047

// IsStorageExceeded reports whether err is a stream refused because its
// byte limit does not fit the account's or server's JetStream storage.
func IsStorageExceeded(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && ae.ErrorCode == jsErrStorageExceeded
}

// IsStreamFull reports whether err is a publication refused by a stream at
// its byte or message limit (discard new).
func IsStreamFull(err error) bool {
	var ae *jetstream.APIError
	return errors.As(err, &ae) && ae.ErrorCode == jsErrStoreFailed
}

// ours decides a duplicate ack for an internal publication of msg, made
// while working on the message at stream sequence after: the stored original
// must be newer than after and carry msg's subject and Nats-Msg-Id. An
// original that is gone (a consumer removed it) counts as ours when it was
// newer than after and the id is secret (gone); with a guessable id it does
// not.
func ours(ctx context.Context, js jetstream.JetStream, ack *jetstream.PubAck, msg *nats.Msg, after uint64, gone bool) (bool, error) {
	if ack.Sequence <= after {
		return false, nil
	}
	st, err := js.Stream(ctx, ack.Stream)
	if err != nil {
		return false, fmt.Errorf("check duplicate: %w", err)
	}
	orig, err := st.GetMsg(ctx, ack.Sequence)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return gone, nil
	}
	if err != nil {
		return false, fmt.Errorf("check duplicate: %w", err)
	}
	return orig.Subject == msg.Subject && orig.Header.Get(HeaderMsgID) == msg.Header.Get(HeaderMsgID), nil
}

// publishInternal publishes one of sendid's own messages and checks a
// duplicate ack (see ours); a duplicate that is not ours is published again
// under the next alternate id ("<id>~1", "~2", …: still deterministic, so a
// re-publication after a crash still finds its original), so the message is
// never lost to a foreign one.
func (p *Publisher) publishInternal(ctx context.Context, msg *nats.Msg, after uint64) (*jetstream.PubAck, error) {
	return publishChecked(ctx, p.js, msg, after, true)
}

// publishChecked is publishInternal for any JetStream handle (sendidctl's
// replays too); gone says what an original that is no longer stored means
// (see ours).
func publishChecked(ctx context.Context, js jetstream.JetStream, msg *nats.Msg, after uint64, gone bool) (*jetstream.PubAck, error) {
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		return nil, err
	}
	return confirmChecked(ctx, js, ack, msg, after, gone)
}

// maxAlternates bounds the alternate ids tried after foreign duplicates.
const maxAlternates = 4

func confirmChecked(ctx context.Context, js jetstream.JetStream, ack *jetstream.PubAck, msg *nats.Msg, after uint64, gone bool) (*jetstream.PubAck, error) {
	base := msg.Header.Get(HeaderMsgID)
	cp := *msg
	cp.Header = nats.Header{}
	for k, v := range msg.Header {
		cp.Header[k] = v
	}
	for i := 1; ; i++ {
		if !ack.Duplicate {
			return ack, nil
		}
		ok, err := ours(ctx, js, ack, &cp, after, gone)
		if err != nil || ok {
			return ack, err
		}
		if i > maxAlternates {
			return nil, fmt.Errorf("%d foreign messages hold the ids of this publication", i)
		}
		cp.Header.Set(HeaderMsgID, base+"~"+strconv.Itoa(i))
		if ack, err = js.PublishMsg(ctx, &cp); err != nil {
			return nil, err
		}
	}
}

// ConfirmReady checks the ack of an admission published with ReadyAsync
// for the job message at stream sequence seq: a duplicate that is not a
// re-admission of that job is published again under a unique id.
func (p *Publisher) ConfirmReady(ctx context.Context, ack *jetstream.PubAck, msg *nats.Msg, seq uint64) error {
	if _, err := confirmChecked(ctx, p.js, ack, msg, seq, true); err != nil {
		return fmt.Errorf("publish to %s: %w", msg.Subject, err)
	}
	return nil
}
