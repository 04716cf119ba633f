package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// ConnOptions configures Connect.
type ConnOptions struct {
	URL           string // comma-separated
	Name          string
	CredsFile     string
	NKeyFile      string
	CAFile        string
	CertFile      string
	KeyFile       string
	ReconnectWait time.Duration
	// RetryOnFailedConnect keeps trying when no server is reachable at start
	// (the worker reports not-ready meanwhile) instead of failing. TLS and
	// authentication failures still fail at once.
	RetryOnFailedConnect bool
	Log                  *zap.Logger
	// User and Password, or Token, authenticate without a creds or nkey
	// file (sendidctl reads them from a nats CLI context).
	User, Password, Token string
}

// Connect dials NATS with reconnect-forever and jittered backoff. Connection
// state changes are logged; credentials never are.
func Connect(o ConnOptions) (*nats.Conn, error) {
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	wait := o.ReconnectWait
	if wait <= 0 {
		wait = 2 * time.Second
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(wait),
		nats.ReconnectJitter(wait/2, wait),
		nats.PingInterval(20 * time.Second),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() && err == nil {
				log.Debug("nats connection closed") // our own Close or Drain: no warning
				return
			}
			log.Warn("nats disconnected", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ConnectHandler(func(nc *nats.Conn) {
			log.Info("nats connected", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", zap.String("subject", subj), zap.Error(err))
		}),
	}
	if o.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.NKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey %s: %w", o.NKeyFile, err)
		}
		opts = append(opts, opt)
	}
	if o.CAFile != "" || o.CertFile != "" {
		cfg, err := tlsConfig(o)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	if o.RetryOnFailedConnect {
		// One plain attempt first: a server that is down is worth waiting
		// for, but one that fails TLS verification or refuses our
		// credentials is a configuration fault to report, not to retry.
		nc, err := nats.Connect(o.URL, opts...)
		if err == nil {
			return nc, nil
		}
		if fatalConnectError(err) {
			return nil, fmt.Errorf("nats connect %s: %w", RedactURL(o.URL), scrub(err, o.URL))
		}
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats connect %s: %w", RedactURL(o.URL), scrub(err, o.URL))
	}
	return nc, nil
}

// fatalConnectError reports TLS verification and authentication failures.
func fatalConnectError(err error) bool {
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	return errors.As(err, &certErr) || errors.As(err, &unknownAuth) || errors.As(err, &hostErr) ||
		errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrSecureConnRequired) || errors.Is(err, nats.ErrSecureConnWanted)
}

func tlsConfig(o ConnOptions) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("nats tls ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("nats tls ca %s: no certificates found", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats tls client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// StreamSettings configures EnsureStreams.
type StreamSettings struct {
	Subjects
	Replicas        int
	DuplicateWindow time.Duration
	Results         bool
	ResultsMaxAge   time.Duration
	// Groups is how many app groups need a lane consumer (0: not checked).
	// With an account consumer limit too low for them all, EnsureStreams
	// returns a *GroupLimitError and creates nothing.
	Groups int
	// MaxBytes bounds SENDID (0 or -1: unlimited); once full, new jobs are
	// refused to their publishers (discard new) rather than old ones dropped.
	MaxBytes int64
	// ResultsMaxBytes bounds SENDID_RESULTS (0 or -1: unlimited; oldest go).
	ResultsMaxBytes int64
}

// EnsureStreams creates or updates SENDID (jobs, ready and dead subjects of
// any group; WorkQueue; file storage) and, when enabled, SENDID_RESULTS.
// Idempotent: replicas starting together converge on the same config. The
// stream's consumer limit follows the account's JetStream limits.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, s StreamSettings) error {
	p := s.Prefix
	var limit int
	if err := retry(ctx, func() (err error) {
		limit, err = ConsumerLimit(ctx, js, s.Replicas)
		return err
	}); err != nil {
		return err
	}
	if err := CheckGroupsFit(s.Groups, limit); err != nil {
		return err
	}
	cfgs := []jetstream.StreamConfig{{
		Name:        Stream,
		Description: "sendid jobs, admitted FIFO per app group, dead letters",
		Subjects:    []string{p + ".jobs", p + ".jobs.*", p + ".ready.*", p + ".dead.*"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
		Duplicates:  s.DuplicateWindow,
		// Full: refuse what comes in, never drop a stored job.
		Discard:  jetstream.DiscardNew,
		MaxBytes: s.MaxBytes,
		// One consumer per app group plus admission, as many as the
		// account allows (see streamConsumerLimit).
		MaxConsumers: streamConsumerLimit(limit),
	}}
	if s.Results {
		cfgs = append(cfgs, jetstream.StreamConfig{
			Name:        ResultsStream,
			Description: "sendid results kept for publishers that were not listening",
			Subjects:    []string{p + ".results.>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    s.Replicas,
			MaxAge:      s.ResultsMaxAge,
			MaxBytes:    s.ResultsMaxBytes,
			Duplicates:  min(s.DuplicateWindow, s.ResultsMaxAge),
		})
	}
	for _, cfg := range cfgs {
		if err := retry(ctx, func() error {
			_, err := js.CreateOrUpdateStream(ctx, cfg)
			return err
		}); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// MaxConsumers is the SENDID stream's consumer limit (app groups + 1) in an
// account without a consumer limit.
const MaxConsumers = 100_000

// Buckets are the KV buckets the worker uses.
type Buckets struct {
	Ledger, Jobs, Pairs jetstream.KeyValue
	IDs                 IDs // the deployment's id scheme (LoadIDs)
}

// BucketSettings configures EnsureBuckets.
type BucketSettings struct {
	Replicas     int
	LedgerTTL    time.Duration
	JobRecordTTL time.Duration
	PairTTL      time.Duration
}

// EnsureBuckets creates or updates the ledger, job-record and pair buckets.
func EnsureBuckets(ctx context.Context, js jetstream.JetStream, s BucketSettings) (Buckets, error) {
	var b Buckets
	for _, x := range []struct {
		dst  *jetstream.KeyValue
		name string
		ttl  time.Duration
		desc string
	}{
		{&b.Ledger, LedgerBucket, s.LedgerTTL, "sendid quota ledger: <group>.<period start> → used"},
		{&b.Jobs, JobsBucket, s.JobRecordTTL, "sendid job records by hashed app group and job id"},
		{&b.Pairs, PairsBucket, s.PairTTL, "sendid created (campaign_id, send_id) pairs"},
	} {
		cfg := jetstream.KeyValueConfig{Bucket: x.name, Description: x.desc, History: 1, TTL: x.ttl, Storage: jetstream.FileStorage, Replicas: s.Replicas}
		if err := retry(ctx, func() error {
			kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
			*x.dst = kv
			return err
		}); err != nil {
			return Buckets{}, fmt.Errorf("kv bucket %s: %w", x.name, err)
		}
	}
	return b, nil
}

// EnsureAdmission creates or updates the shared durable consumer of every
// job subject. Like a lane, it is pulled through LanePriorityGroup with the
// pinned policy, so one replica at a time admits, in stream order: jobs of
// a group reach its FIFO in the order they were published, whatever the
// number of replicas. AckWait = failover (DefaultLaneFailover when 0): the
// unacknowledged jobs of an admitting replica that died are redelivered by
// the time another is pinned, and the server hands out redeliveries first.
// Admission is idempotent (ready messages carry a Nats-Msg-Id), so a
// redelivery costs work, never a second admission.
func EnsureAdmission(ctx context.Context, js jetstream.JetStream, s Subjects, failover time.Duration) (jetstream.Consumer, error) {
	if failover <= 0 {
		failover = DefaultLaneFailover
	}
	var c jetstream.Consumer
	err := retry(ctx, func() (err error) {
		c, err = js.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{
			Durable:        AdmissionName,
			Description:    "sendid admission: validate, dedup, forecast, admit",
			FilterSubjects: []string{s.Prefix + ".jobs", s.Prefix + ".jobs.*"},
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        failover,
			MaxDeliver:     -1,
			MaxAckPending:  1024,
			PriorityPolicy: jetstream.PriorityPolicyPinned,
			PriorityGroups: []string{LanePriorityGroup},
			PinnedTTL:      failover,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", AdmissionName, err)
	}
	return c, nil
}

// EnsureLane creates or updates a group's lane consumer. Every replica
// pulls it through the priority group LanePriorityGroup with the pinned
// policy: one replica at a time receives the group's jobs, and another
// takes the group over once the owner has not pulled for failover
// (PinnedTTL; DefaultLaneFailover when 0). MaxAckPending 1 keeps one job of
// the group in flight across all replicas, also while ownership moves, and
// AckWait = failover redelivers the job of an owner that died (a live one
// extends it with InProgress). A consumer created before priority groups
// existed is updated in place: the server accepts the new policy.
func EnsureLane(ctx context.Context, js jetstream.JetStream, s Subjects, group string, failover time.Duration) (jetstream.Consumer, error) {
	if failover <= 0 {
		failover = DefaultLaneFailover
	}
	var c jetstream.Consumer
	name := LaneConsumer(group)
	err := retry(ctx, func() (err error) {
		c, err = js.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{
			Durable:        name,
			Description:    "sendid lane of app group " + group,
			FilterSubject:  s.Ready(group),
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        failover,
			MaxDeliver:     -1,
			MaxAckPending:  1,
			PriorityPolicy: jetstream.PriorityPolicyPinned,
			PriorityGroups: []string{LanePriorityGroup},
			PinnedTTL:      failover,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", name, err)
	}
	return c, nil
}

// HandOverLane unpins the group's lane consumer so that another replica
// takes the group over at once instead of after the failover time. Only
// the owner should call it, when it stops: it unpins whoever is pinned.
func HandOverLane(ctx context.Context, js jetstream.JetStream, group string) error {
	st, err := js.Stream(ctx, Stream)
	if err != nil {
		return fmt.Errorf("hand over lane %s: %w", group, err)
	}
	if err := st.UnpinConsumer(ctx, LaneConsumer(group), LanePriorityGroup); err != nil {
		return fmt.Errorf("hand over lane %s: %w", group, err)
	}
	return nil
}

// LanePriorityGroup is the priority group of every lane consumer and of
// admission.
const LanePriorityGroup = "sendid"

// DefaultLaneFailover is the lane failover time when none is configured:
// how long a group's owner may go without pulling before another replica
// takes the group over, and how long a job of an owner that died waits
// before it is redelivered.
const DefaultLaneFailover = 5 * time.Second

// retry absorbs the transient errors of several replicas creating the same
// assets at once, or of a cluster electing a leader.
func retry(ctx context.Context, fn func() error) error {
	var err error
	for i := range 8 {
		if err = fn(); err == nil {
			return nil
		}
		if errors.Is(err, context.Canceled) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(time.Duration(100*(i+1)) * time.Millisecond):
		}
	}
	return err
}
