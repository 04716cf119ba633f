package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// Finals reads the final result the worker stored for a job of a group.
// found is false while the job has none (or the id belongs to another
// group).
type Finals interface {
	Final(ctx context.Context, group, id string) (r queue.Result, found bool, err error)
}

// Usage reads a group's quota usage for the X-RateLimit-* headers.
// quota.Ledger satisfies it.
type Usage interface {
	Usage(ctx context.Context, group string) (quota.Usage, error)
}

var _ Usage = quota.Ledger(nil)

// Listener is one address the gateway serves on; TLS nil means plain HTTP.
type Listener struct {
	Addr string
	TLS  *tls.Config
	// AnyPortIfBusy listens on a free port of the same host when Addr's
	// port is taken (-dev's default ports: a second -dev on one machine,
	// or tests in parallel, still start; the banner prints the real URL).
	AnyPortIfBusy bool
}

// Options are the gateway's collaborators and settings. Every field
// without a stated default is required.
type Options struct {
	NC          *nats.Conn
	JS          jetstream.JetStream
	Subjects    queue.Subjects
	Finals      Finals
	Usage       Usage
	Credentials []Credential
	Listeners   []Listener
	Log         *zap.Logger
	Metrics     *Metrics    // default: unregistered collectors
	Clock       quota.Clock // default quota.SystemClock

	MaxBodyBytes      int           // default 64 KiB: the worker's max_job_bytes
	Wait              time.Duration // default 10s (0 is allowed only per request)
	MaxWaiting        int           // default 1000
	ReadHeaderTimeout time.Duration // default 5s
	ReadTimeout       time.Duration // default 10s
	WriteTimeout      time.Duration // default 75s
	IdleTimeout       time.Duration // default 60s
	StoreReplicas     int           // default 1
	StoreTTL          time.Duration // default 168h: how long GET /jobs/<id> finds a queued job
	StoreMaxBytes     int64         // default 256 MiB: the answer bucket's bound (full: answers are not kept)
	PublishTimeout    time.Duration // default 10s: how long a job's publication may wait for the stream (then 503)
}

// Gateway is the HTTP front door. New, Start, then Shutdown.
type Gateway struct {
	o     Options
	log   *zap.Logger
	creds atomic.Pointer[[]credential]

	store   jetstream.KeyValue
	inbox   string
	sub     *nats.Subscription
	waiters waiters
	slots   chan struct{}

	servers []*http.Server
	addrs   []string
	quit    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// New checks the options and the credentials.
func New(o Options) (*Gateway, error) {
	if o.NC == nil || o.JS == nil || o.Finals == nil || o.Usage == nil || o.Log == nil || len(o.Listeners) == 0 {
		return nil, errors.New("gateway: NC, JS, Finals, Usage, Log and a listener are required")
	}
	if o.Subjects.Prefix == "" {
		return nil, errors.New("gateway: subject prefix is required")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.Wait, 10*time.Second)
	def(&o.ReadHeaderTimeout, 5*time.Second)
	def(&o.ReadTimeout, 10*time.Second)
	def(&o.WriteTimeout, 75*time.Second)
	def(&o.IdleTimeout, 60*time.Second)
	def(&o.StoreTTL, 7*24*time.Hour)
	def(&o.PublishTimeout, 10*time.Second)
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 64 << 10
	}
	if o.MaxWaiting <= 0 {
		o.MaxWaiting = 1000
	}
	if o.StoreMaxBytes <= 0 {
		o.StoreMaxBytes = 256 << 20
	}
	if o.StoreReplicas <= 0 {
		o.StoreReplicas = 1
	}
	if o.Clock == nil {
		o.Clock = quota.SystemClock{}
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	g := &Gateway{o: o, log: o.Log.Named("gateway"), slots: make(chan struct{}, o.MaxWaiting), quit: make(chan struct{})}
	if err := g.SetCredentials(o.Credentials); err != nil {
		return nil, err
	}
	return g, nil
}

// Start creates the answer bucket, subscribes the inbox and opens the
// listeners. Serving stops when ctx ends or Shutdown is called; call
// Shutdown in any case to wait for it.
func (g *Gateway) Start(ctx context.Context) error {
	kv, err := g.o.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: StoreBucket,
		Description: "sendid gateway: answers kept for GET /jobs/<id>", History: 1, TTL: g.o.StoreTTL,
		Storage: jetstream.FileStorage, Replicas: g.o.StoreReplicas, MaxBytes: g.o.StoreMaxBytes})
	if err != nil {
		return fmt.Errorf("gateway: kv bucket %s: %w", StoreBucket, err)
	}
	g.store = kv
	g.inbox = g.o.NC.NewInbox()
	if g.sub, err = g.o.NC.Subscribe(g.inbox+".*", g.onAnswer); err != nil {
		return fmt.Errorf("gateway: inbox: %w", err)
	}
	var lns []net.Listener
	for _, l := range g.o.Listeners {
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil && l.AnyPortIfBusy && errors.Is(err, syscall.EADDRINUSE) {
			if host, _, herr := net.SplitHostPort(l.Addr); herr == nil {
				g.o.Log.Info("gateway port busy; listening on a free port", zap.String("addr", l.Addr))
				ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
			}
		}
		if err != nil {
			for _, o := range lns {
				_ = o.Close()
			}
			_ = g.sub.Unsubscribe()
			return fmt.Errorf("gateway listen %s: %w", l.Addr, err)
		}
		scheme := "http"
		if l.TLS != nil {
			ln, scheme = tls.NewListener(ln, l.TLS), "https"
		}
		lns = append(lns, ln)
		g.addrs = append(g.addrs, scheme+"://"+ln.Addr().String())
	}
	for _, ln := range lns {
		srv := &http.Server{Handler: g, ReadHeaderTimeout: g.o.ReadHeaderTimeout, ReadTimeout: g.o.ReadTimeout,
			WriteTimeout: g.o.WriteTimeout, IdleTimeout: g.o.IdleTimeout, MaxHeaderBytes: 32 << 10,
			// Per-connection errors (TLS handshakes of scanners, broken
			// clients) at debug: an unauthenticated peer must not be able to
			// flood the log.
			ErrorLog: debugStdLog(g.log)}
		g.servers = append(g.servers, srv)
		g.wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				g.log.Error("gateway server stopped", zap.Error(err))
			}
		})
	}
	g.wg.Go(func() {
		select {
		case <-ctx.Done():
			g.stop()
		case <-g.quit:
		}
	})
	g.log.Info("gateway listening", zap.Strings("urls", g.addrs))
	return nil
}

func debugStdLog(log *zap.Logger) *stdlog.Logger {
	l, err := zap.NewStdLogAt(log, zap.DebugLevel)
	if err != nil { // only for a level zap does not know
		return zap.NewStdLog(log)
	}
	return l
}

// URLs are the base URLs the gateway serves on (known after Start).
func (g *Gateway) URLs() []string { return append([]string(nil), g.addrs...) }

// stop closes the listeners, answers every waiting request 202 at once (its
// job is stored and runs anyway) and waits, bounded, for the handlers.
func (g *Gateway) stop() {
	g.once.Do(func() {
		close(g.quit)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range g.servers {
			if err := s.Shutdown(ctx); err != nil {
				_ = s.Close()
			}
		}
	})
}

// Shutdown stops serving and waits for every goroutine of the gateway.
// It may be called more than once.
func (g *Gateway) Shutdown() {
	g.stop()
	g.wg.Wait()
	if g.sub != nil {
		_ = g.sub.Unsubscribe()
	}
}

// Paths served.
const (
	CreatePath = "/sends/id/create"
	JobsPath   = "/jobs/"
)

// ServeHTTP routes Braze's endpoint and GET /jobs/<id>; everything else is
// a 404 in Braze's shape.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == CreatePath:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			g.write(w, "create", answer{status: http.StatusMethodNotAllowed, body: errorBody{Message: "Method Not Allowed"}}, request{})
			return
		}
		g.create(w, r)
	case strings.HasPrefix(r.URL.Path, JobsPath):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", http.MethodGet)
			g.write(w, "job", answer{status: http.StatusMethodNotAllowed, body: errorBody{Message: "Method Not Allowed"}}, request{})
			return
		}
		g.job(w, r)
	default:
		g.write(w, "other", answer{status: http.StatusNotFound, body: errorBody{Message: "Not Found"}}, request{})
	}
}

// write sends an answer with its headers.
func (g *Gateway) write(w http.ResponseWriter, route string, a answer, req request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if req.jobID != "" {
		h.Set("X-Sendid-Job-Id", req.jobID)
	}
	if a.duplicate {
		h.Set("X-Sendid-Duplicate", "true")
	}
	if a.location {
		h.Set("Location", JobsPath+url.PathEscape(req.jobID))
	}
	if a.rateLimit && req.group != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		u, err := g.o.Usage.Usage(ctx, req.group)
		cancel()
		if err == nil {
			reset := u.PeriodEnd
			if u.ExhaustedUntil.After(reset) {
				reset = u.ExhaustedUntil
			}
			// Braze's spelling (Go would canonicalize to X-Ratelimit-*).
			h["X-RateLimit-Limit"] = []string{strconv.Itoa(u.Cap)}
			h["X-RateLimit-Remaining"] = []string{strconv.Itoa(u.Remaining)}
			h["X-RateLimit-Reset"] = []string{strconv.FormatInt(reset.Unix(), 10)}
		} else {
			g.log.Debug("gateway: no usage for rate-limit headers", zap.String("app_group", req.group), zap.Error(err))
		}
	}
	data, err := json.Marshal(a.body)
	if err != nil {
		g.log.Error("gateway answer not encodable", zap.Error(err))
		a.status, data = http.StatusInternalServerError, []byte(`{"message":"Internal Server Error"}`)
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(append(data, '\n'))
	g.o.Metrics.Requests.WithLabelValues(route, strconv.Itoa(a.status)).Inc()
}

// failure is a Braze-shaped error answer of the gateway's own.
func failure(status int, msg string) answer {
	return answer{status: status, body: errorBody{Message: msg}}
}
