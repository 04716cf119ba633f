package worker_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/worker"
)

// kit is one worker wired to an embedded NATS server and a simulator.
type kit struct {
	t       *testing.T
	ns      *natstest.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	sim     *brazetest.Server
	w       *worker.Worker
	subj    queue.Subjects
	stop    context.CancelFunc
	done    chan error
	results *collector
	client  *braze.Client
	ledger  quota.Ledger
	pub     *queue.Publisher
}

type kitOptions struct {
	groups      map[string]quota.Policy // default: {"default": 100/day, burst 10}
	keys        map[string]string       // key per group (default "key-<group>")
	sim         brazetest.Options
	maxAttempts int
	inDoubt     map[string]worker.InDoubtPolicy // per group (default: retry)
	backoff     time.Duration                   // first retry delay (default 20ms)
	// For the quota tests: the worker's clock (default the system clock),
	// a wrapper around its ledger, and a handler in front of the simulator.
	clock    quota.Clock
	ledger   func(quota.Ledger) quota.Ledger
	front    func(sim http.Handler) http.Handler
	metrics  *worker.Metrics // default: unregistered
	failover time.Duration   // lane failover (default: the worker's)

	// For the security tests: adjust each group before the worker starts.
	tune func(*worker.Group)

	// before runs once the streams, buckets and result collector exist and
	// before the worker starts (jobs published here wait in the stream).
	before func(k *kit)
	// records wraps the job and pair buckets the worker's records use.
	records func(jetstream.KeyValue) jetstream.KeyValue
}

func newKit(t *testing.T, o kitOptions) *kit {
	t.Helper()
	if o.groups == nil {
		o.groups = map[string]quota.Policy{"default": {Cap: 100, Burst: 10, Period: 24 * time.Hour}}
	}
	k := &kit{t: t, ns: natstest.Start(t), subj: queue.Subjects{Prefix: "sendid"}}
	k.nc, k.js = k.ns.Connect()
	k.sim = brazetest.NewServer(o.sim)
	t.Cleanup(k.sim.Close)
	ctx := context.Background()
	if err := queue.EnsureStreams(ctx, k.js, queue.StreamSettings{Subjects: k.subj, Replicas: 1, DuplicateWindow: 2 * time.Minute, Results: true, ResultsMaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	b, err := queue.EnsureBuckets(ctx, k.js, queue.BucketSettings{Replicas: 1, LedgerTTL: time.Hour, JobRecordTTL: time.Hour, PairTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	brazeURL := k.sim.URL
	if o.front != nil {
		fs := httptest.NewServer(o.front(k.sim))
		t.Cleanup(fs.Close)
		brazeURL = fs.URL
	}
	k.client, err = braze.New(brazeURL, braze.WithHTTPClient(&http.Client{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	var groups []worker.Group
	for name, pol := range o.groups {
		key := "key-" + name
		if v, ok := o.keys[name]; ok {
			key = v
		}
		g := worker.Group{Name: name, Key: braze.Key(key), Sender: k.client, Policy: pol, InDoubt: o.inDoubt[name]}
		if o.tune != nil {
			o.tune(&g)
		}
		groups = append(groups, g)
	}
	k.pub = queue.NewPublisher(k.nc, k.js, k.subj, true)
	log := zaptest.NewLogger(t)
	clock := o.clock
	if clock == nil {
		clock = quota.SystemClock{}
	}
	pols := quota.NewPolicies(log).UseClock(clock)
	k.ledger = quota.NewKV(b.Ledger, pols, clock)
	var ledger quota.Ledger = k.ledger
	if o.ledger != nil {
		ledger = o.ledger(ledger)
	}
	jobsKV, pairsKV := b.Jobs, b.Pairs
	if o.records != nil {
		jobsKV, pairsKV = o.records(jobsKV), o.records(pairsKV)
	}
	k.w, err = worker.New(worker.Options{
		NC: k.nc, JS: k.js, Subjects: k.subj, Records: queue.NewRecords(jobsKV, pairsKV),
		Publisher: k.pub, Ledger: ledger,
		Pacer: quota.NewPacer(clock), Policies: pols, Log: log, Clock: clock,
		MaxAttempts: o.maxAttempts, RetryBackoff: cmp.Or(o.backoff, 20*time.Millisecond), RetryMax: max(o.backoff, 100*time.Millisecond),
		ShutdownTimeout: 5 * time.Second, RecheckInterval: 2 * time.Second,
		Metrics: o.metrics, LaneFailover: o.failover,
	}, groups)
	if err != nil {
		t.Fatal(err)
	}
	k.results = collect(t, k.nc, "test.>", "sendid.results.>")
	if o.before != nil {
		o.before(k)
	}
	var runCtx context.Context
	runCtx, k.stop = context.WithCancel(context.Background())
	k.done = make(chan error, 1)
	go func() { k.done <- k.w.Run(runCtx) }()
	t.Cleanup(func() {
		k.stop()
		select {
		case err := <-k.done:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("worker did not stop within 15s")
		}
	})
	k.waitReady()
	return k
}

// used is the default group's ledger count in the current period.
func (k *kit) used() int {
	k.t.Helper()
	u, err := k.ledger.Usage(context.Background(), "default")
	if err != nil {
		k.t.Fatal(err)
	}
	return u.Used
}

func (k *kit) waitReady() {
	k.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for k.w.Ready() != nil {
		if time.Now().After(deadline) {
			k.t.Fatalf("worker not ready: %v", k.w.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publish sends a job body to subject, with optional headers (name, value...).
func (k *kit) publish(subject string, body any, hdr ...string) {
	k.t.Helper()
	var data []byte
	switch b := body.(type) {
	case []byte:
		data = b
	case string:
		data = []byte(b)
	default:
		data, _ = json.Marshal(b)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	for i := 0; i+1 < len(hdr); i += 2 {
		msg.Header.Set(hdr[i], hdr[i+1])
	}
	if _, err := k.js.PublishMsg(context.Background(), msg); err != nil {
		k.t.Fatalf("publish: %v", err)
	}
}

// received is a result with the subject it arrived on.
type received struct {
	queue.Result
	Subject string
	MsgID   string
	Arrived time.Time
}

type collector struct {
	mu   sync.Mutex
	all  []received
	more chan struct{}
}

func collect(t *testing.T, nc *nats.Conn, subjects ...string) *collector {
	c := &collector{more: make(chan struct{}, 1)}
	for _, s := range subjects {
		sub, err := nc.Subscribe(s, func(m *nats.Msg) {
			var r queue.Result
			if err := json.Unmarshal(m.Data, &r); err != nil {
				t.Errorf("result on %s is not JSON: %s", m.Subject, m.Data)
				return
			}
			c.mu.Lock()
			c.all = append(c.all, received{Result: r, Subject: m.Subject, MsgID: m.Header.Get("Nats-Msg-Id"), Arrived: time.Now()})
			c.mu.Unlock()
			select {
			case c.more <- struct{}{}:
			default:
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *collector) snapshot() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.all...)
}

// finals returns the final results, by job id.
func (c *collector) finals() map[string]received {
	out := map[string]received{}
	for _, r := range c.snapshot() {
		if r.Status != queue.StatusDeferred {
			out[r.ID] = r
		}
	}
	return out
}

// waitFinals waits until n distinct jobs have final results.
func (c *collector) waitFinals(t *testing.T, n int, timeout time.Duration) map[string]received {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if f := c.finals(); len(f) >= n {
			return f
		}
		select {
		case <-c.more:
		case <-deadline:
			f := c.finals()
			t.Fatalf("%d of %d final results after %s: %v", len(f), n, timeout, f)
		}
	}
}

func job(campaign, send, id, reply string) map[string]any {
	m := map[string]any{"campaign_id": campaign}
	if send != "" {
		m["send_id"] = send
	}
	if id != "" {
		m["id"] = id
	}
	if reply != "" {
		m["reply_to"] = reply
	}
	return m
}

func ids(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}
