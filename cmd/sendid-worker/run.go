package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/gateway"
	"github.com/sendid/sendid/internal/version"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
	"github.com/sendid/sendid/ui"
	"github.com/sendid/sendid/worker"
)

// flags are the command-line settings; they override file and env.
type flags struct {
	configPath  string
	dev         bool
	checkConfig bool
	pprof       bool
	version     bool
	set         map[string]string // config flag name → value, only those given
	usage       string            // the flags' help, for -h
}

func parseFlags(args []string, getenv func(string) string) (flags, error) {
	fs := flag.NewFlagSet("sendid-worker", flag.ContinueOnError)
	var f flags
	fs.StringVar(&f.configPath, "config", getenv("SENDID_CONFIG"), "YAML configuration file (env SENDID_CONFIG)")
	fs.BoolVar(&f.dev, "dev", false, "embedded NATS server and Braze simulator: runs with nothing else installed")
	fs.BoolVar(&f.checkConfig, "check-config", false, "validate the configuration and exit")
	fs.BoolVar(&f.pprof, "pprof", false, "serve /debug/pprof on the HTTP address")
	fs.BoolVar(&f.version, "version", false, "print the version and exit")
	names := []struct{ name, help string }{
		{"nats-url", "NATS servers (env SENDID_NATS_URL)"},
		{"braze-url", "Braze REST endpoint (env SENDID_BRAZE_URL)"},
		{"http-addr", "metrics and health address (env SENDID_HTTP_ADDR)"},
		{"log-level", "debug, info, warn or error (env SENDID_LOG_LEVEL)"},
		{"log-format", "json or console (env SENDID_LOG_FORMAT)"},
		{"dev-dir", "data folder of -dev mode (default ./sendid-dev-data)"},
	}
	vals := map[string]*string{}
	for _, n := range names {
		vals[n.name] = fs.String(n.name, "", n.help)
	}
	f.usage = flagUsage(fs)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, err
		}
		return f, fmt.Errorf("%w: %v (sendid-worker -h lists the flags)", errUsage, err)
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	f.set = map[string]string{}
	fs.Visit(func(fl *flag.Flag) {
		if v, ok := vals[fl.Name]; ok {
			f.set[fl.Name] = *v
		}
	})
	return f, nil
}

// loadConfig is defaults < file < env < flags, then Validate, the files the
// configuration names and the keys: every problem in one error.
func loadConfig(f flags, getenv func(string) string) (*config.Config, map[string]config.Secret, error) {
	cfg, err := config.Load(f.configPath, getenv)
	if cfg == nil {
		return nil, nil, err
	}
	problems := config.Problems(err)
	if f.dev && getenv("SENDID_LOG_FORMAT") == "" {
		cfg.Log.Format = "console"
	}
	devLoopback(f, cfg, getenv)
	for name, v := range f.set {
		switch name {
		case "nats-url":
			cfg.NATS.URL = v
		case "braze-url":
			cfg.Braze.URL = v
		case "http-addr":
			cfg.HTTPAddr = v
		case "log-level":
			cfg.Log.Level = v
		case "log-format":
			cfg.Log.Format = v
		case "dev-dir":
			cfg.Dev.DataDir = v
		}
	}
	problems = append(problems, config.Problems(cfg.Validate(f.dev))...)
	problems = append(problems, cfg.CheckFiles()...)
	keys, err := cfg.LoadKeys(getenv, f.dev)
	problems = append(problems, config.Problems(err)...)
	if len(problems) > 0 {
		return nil, nil, &config.Error{Problems: problems}
	}
	return cfg, keys, nil
}

func newLogger(cfg *config.Config, out io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	level, err := zap.ParseAtomicLevel(cfg.Log.Level)
	if err != nil {
		return nil, level, &config.Error{Problems: []string{"log.level: " + err.Error()}}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder // "2s", not 2.000000
	var enc zapcore.Encoder
	if cfg.Log.Format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		encCfg.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(out), level)
	return zap.New(core, zap.AddCaller()), level, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, hup <-chan os.Signal, stdout io.Writer) error {
	f, err := parseFlags(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, f.usage)
		return nil
	}
	if err != nil {
		return err
	}
	if f.version {
		fmt.Fprintf(stdout, "sendid-worker %s (%s)\n", version.String(), version.Go())
		return nil
	}
	cfg, keys, err := loadConfig(f, getenv)
	if err != nil {
		return err
	}
	if f.checkConfig {
		if _, err := buildGroups(cfg, keys, "", zap.NewNop()); err != nil {
			return err
		}
		if err := checkGateway(f, cfg, keys, getenv); err != nil {
			return err
		}
		if err := checkAccount(ctx, cfg, stdout); err != nil {
			return err
		}
		if err := checkSecurity(cfg, getenv, stdout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "configuration ok: %d app group(s): %s\n", len(cfg.AppGroups), strings.Join(groupNames(cfg), ", "))
		return nil
	}
	log, level, err := newLogger(cfg, stdout)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	admin, err := adminAccess(cfg, getenv, log)
	if err != nil {
		return err
	}

	// -dev: embedded NATS and Braze simulator.
	var simURL string
	if f.dev {
		ns, err := startDevNATS(cfg, log)
		if err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		sim, stopSim, err := startDevSim(cfg, log)
		if err != nil {
			return err
		}
		defer stopSim()
		simURL = sim
	}
	groups, err := buildGroups(cfg, keys, simURL, log)
	if err != nil {
		return err
	}

	nc, err := queue.Connect(queue.ConnOptions{
		URL: cfg.NATS.URL, Name: cfg.NATS.Name, CredsFile: cfg.NATS.CredsFile, NKeyFile: cfg.NATS.NKeyFile,
		CAFile: cfg.NATS.TLS.CAFile, CertFile: cfg.NATS.TLS.CertFile, KeyFile: cfg.NATS.TLS.KeyFile,
		ReconnectWait: cfg.NATS.ReconnectWait, RetryOnFailedConnect: true, Log: log.Named("nats"),
	})
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	ms := newMetricSet(nc.IsConnected)
	reg := ms.registry()
	metrics, collector := ms.worker, ms.quota

	var (
		wk       atomic.Pointer[worker.Worker]
		setupErr atomic.Pointer[string]
		stopping atomic.Bool
	)
	notReady := "starting"
	setupErr.Store(&notReady)
	ready := func() error {
		switch {
		case stopping.Load():
			return errors.New("shutting down")
		case !nc.IsConnected():
			return fmt.Errorf("nats not connected (%s)", nc.Status())
		}
		if s := setupErr.Load(); s != nil {
			return errors.New(*s)
		}
		if w := wk.Load(); w != nil {
			return w.Ready()
		}
		return errors.New("worker not started")
	}
	adminToken, err := cfg.AdminToken(getenv)
	if err != nil {
		return err
	}
	recent := ui.NewRecent(func(g string) bool { w := wk.Load(); return w != nil && w.HasGroup(g) })
	page := operatorPage(cfg, adminToken, nc, js, &wk, recent, log)
	reg.MustRegister(readyGauge(ready))
	httpSrv, httpDone, err := serveHTTP(cfg.HTTPAddr, reg, level, ready, f.pprof, page, log, admin)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
		<-httpDone
	}()

	// Streams and buckets: NATS may be unreachable for a while; keep trying.
	subjects := queue.Subjects{Prefix: cfg.SubjectPrefix}
	var buckets queue.Buckets
	for attempt := 1; ; attempt++ {
		buckets, err = setup(ctx, js, cfg)
		if err == nil {
			break
		}
		msg := "streams and buckets not ready: " + err.Error()
		setupErr.Store(&msg)
		if ctx.Err() != nil {
			return nil
		}
		logSetupFailure(log, attempt, err) // checkconfig.go
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(time.Duration(attempt)*time.Second, 10*time.Second)):
		}
	}
	setupErr.Store(nil)

	clock := quota.SystemClock{}
	pols := quota.NewPolicies(log.Named("quota")).UseClock(clock)
	ledger := quota.NewKV(buckets.Ledger, pols, clock)
	publisher := queue.NewPublisher(nc, js, subjects, cfg.Streams.Results)
	publisher.UseIDs(buckets.IDs)
	publisher.OnResult(recent.Add)
	w, err := worker.New(worker.Options{
		NC: nc, JS: js, Subjects: subjects,
		Records:   queue.NewRecords(buckets.Jobs, buckets.Pairs),
		Publisher: publisher,
		Ledger:    ledger, Pacer: quota.NewPacer(clock), Policies: pols, Clock: clock,
		Log: log, Metrics: metrics,
		MaxJobBytes: cfg.MaxJobBytes, MaxAttempts: cfg.Braze.MaxAttempts, CallTimeout: cfg.Braze.Timeout,
		RetryBackoff: cfg.Braze.RetryBackoff, RetryMax: cfg.Braze.RetryMax, ShutdownTimeout: cfg.Shutdown,
		RecheckInterval: cfg.Streams.RecheckInterval, ReplyAllow: cfg.ReplySubjects,
		LaneFailover: cfg.LaneFailover,
	}, groups)
	if err != nil {
		return err
	}
	wk.Store(w)
	collector.set(w)
	gw, err := startGateway(ctx, f, cfg, keys, getenv, nc, js, buckets, ledger, reg, log)
	if err != nil {
		return err
	}
	defer stopGateway(gw)

	var wg sync.WaitGroup
	defer wg.Wait()
	reloadCtx, stopReload := context.WithCancel(ctx)
	defer stopReload()
	wg.Go(func() { watchReload(reloadCtx, f, getenv, hup, w, gw, simURL, log) })

	wg.Go(func() { logShutdown(ctx, reloadCtx, cfg.Shutdown, log) })
	log.Info("sendid-worker started", zap.String("version", version.String()), zap.String("go", version.Go()),
		zap.String("nats", redact(cfg.NATS.URL)), zap.Strings("app_groups", groupNames(cfg)),
		zap.String("http", cfg.HTTPAddr), zap.String("subject_prefix", cfg.SubjectPrefix))
	if f.dev {
		fmt.Fprintf(stdout, devBanner, cfg.NATS.URL, simURL, httpURL(cfg.HTTPAddr), httpURL(cfg.HTTPAddr), cfg.NATS.URL, cfg.NATS.URL, cfg.SubjectPrefix)
		printGatewayBanner(stdout, gw, keys)
	}
	runErr := w.Run(ctx)
	stopping.Store(true)
	stopReload()
	stopGateway(gw) // a producer: stopped before the connection drains
	if runErr != nil {
		return fmt.Errorf("worker: %w", runErr)
	}
	// Flush acks and publications, then close.
	if err := nc.Drain(); err != nil {
		log.Warn("nats drain", zap.Error(err))
	}
	for nc.IsDraining() {
		time.Sleep(10 * time.Millisecond)
	}
	log.Info("sendid-worker stopped")
	return nil
}

func setup(ctx context.Context, js jetstream.JetStream, cfg *config.Config) (queue.Buckets, error) {
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := queue.EnsureStreams(sctx, js, queue.StreamSettings{
		Subjects: queue.Subjects{Prefix: cfg.SubjectPrefix}, Replicas: cfg.Streams.Replicas,
		DuplicateWindow: cfg.Streams.DuplicateWindow, Results: cfg.Streams.Results, ResultsMaxAge: cfg.Streams.ResultsMaxAge,
		MaxBytes: cfg.Streams.MaxBytes, ResultsMaxBytes: cfg.Streams.ResultsMaxBytes,
		Groups: len(cfg.Groups()),
	}); err != nil {
		return queue.Buckets{}, storageHint(err, cfg)
	}
	b, err := queue.EnsureBuckets(sctx, js, queue.BucketSettings{
		Replicas:     cfg.Streams.Replicas,
		LedgerTTL:    max(3*cfg.Quota.Period, 72*time.Hour),
		JobRecordTTL: cfg.Streams.JobRecordTTL, PairTTL: cfg.Streams.PairTTL,
	})
	if err != nil {
		return b, err
	}
	b.IDs, err = queue.LoadIDs(sctx, js, cfg.Streams.Replicas)
	return b, err
}

// buildGroups resolves app groups into worker groups, one Braze client per
// distinct URL.
func buildGroups(cfg *config.Config, keys map[string]config.Secret, simURL string, log *zap.Logger) ([]worker.Group, error) {
	clients := map[string]*braze.Client{}
	var out []worker.Group
	var problems []string
	for _, g := range cfg.Groups() {
		u := g.BrazeURL
		if simURL != "" && (u == "" || cfg.AppGroups[g.Name].BrazeURL == "") {
			u = simURL
		}
		c, ok := clients[u]
		if !ok {
			var err error
			c, err = braze.New(u, braze.WithHTTPClient(&http.Client{Timeout: cfg.Braze.Timeout, Transport: braze.DefaultHTTPClient().Transport}))
			if err != nil {
				problems = append(problems, fmt.Sprintf("app_groups.%s braze url: %v", g.Name, err))
				continue
			}
			if pu, _ := url.Parse(u); pu != nil && !braze.KnownHost(pu) && simURL == "" {
				log.Warn("braze url is not a documented Braze REST instance", zap.String("app_group", g.Name), zap.String("braze_url", u))
			}
			clients[u] = c
		}
		inDoubt, err := worker.ParseInDoubt(g.InDoubt)
		if err != nil {
			problems = append(problems, fmt.Sprintf("app_groups.%s: %v", g.Name, err))
			continue
		}
		out = append(out, worker.Group{
			Name: g.Name, Key: braze.Key(keys[g.Name].Reveal()), Sender: c,
			Policy:     quota.Policy{Cap: g.Cap, Burst: g.Burst, Period: cfg.Quota.Period, Location: g.Location, ProbeInterval: cfg.Quota.ProbeInterval},
			InDoubt:    inDoubt,
			ReplyAllow: g.ReplySubjects, MaxBacklog: g.MaxBacklog,
		})
	}
	if len(problems) > 0 {
		return nil, &config.Error{Problems: problems}
	}
	return out, nil
}

// watchReload re-reads configuration and keys on SIGHUP and when a key
// file changes, and applies them without dropping a job. Between reloads it
// only stats the key files it knows of.
func watchReload(ctx context.Context, f flags, getenv func(string) string, hup <-chan os.Signal, w *worker.Worker, gw *gateway.Gateway, simURL string, log *zap.Logger) {
	files := keyFiles(f, getenv)
	stamp := stamps(files)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		why := ""
		select {
		case <-ctx.Done():
			return
		case <-hup:
			why = "SIGHUP"
		case <-tick.C:
			now := stamps(files)
			if now == stamp {
				continue
			}
			stamp, why = now, "key file changed"
		}
		cfg, keys, err := loadConfig(f, getenv)
		if err != nil {
			log.Error("reload refused; keeping the running configuration", zap.String("trigger", why), zap.Error(err))
			continue
		}
		files = keyFiles(f, getenv)
		stamp = stamps(files)
		groups, err := buildGroups(cfg, keys, simURL, log)
		if err == nil {
			err = w.Reload(groups)
		}
		if err == nil {
			err = reloadGateway(gw, cfg, keys, getenv)
		}
		if err != nil {
			log.Error("reload failed", zap.String("trigger", why), zap.Error(err))
			continue
		}
		log.Info("configuration reloaded", zap.String("trigger", why), zap.Int("app_groups", len(groups)))
	}
}

// keyFiles lists the key files the configuration names.
func keyFiles(f flags, getenv func(string) string) []string {
	cfg, err := config.Load(f.configPath, getenv)
	if err != nil {
		return nil
	}
	var out []string
	for _, g := range cfg.Groups() {
		if g.APIKeyFile != "" {
			out = append(out, g.APIKeyFile)
		}
		if t := cfg.AppGroups[g.Name].GatewayTokensFile; t != "" {
			out = append(out, t)
		}
	}
	return out
}

// stamps fingerprints the files' sizes and modification times.
func stamps(files []string) string {
	var b strings.Builder
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
		}
	}
	return b.String()
}

func groupNames(cfg *config.Config) []string {
	var out []string
	for _, g := range cfg.Groups() {
		out = append(out, g.Name)
	}
	return out
}

// redact hides the user info of NATS URLs, also of those a URL parser
// cannot read (a password holding '/' or '#').
func redact(u string) string { return queue.RedactURL(u) }

// startDevNATS runs an embedded JetStream server on the host and port of
// the configured NATS URL, storing data under the dev folder.
func startDevNATS(cfg *config.Config, log *zap.Logger) (*server.Server, error) {
	first := strings.TrimSpace(strings.Split(cfg.NATS.URL, ",")[0])
	u, err := url.Parse(first)
	if err != nil {
		return nil, &config.Error{Problems: []string{"nats.url: " + err.Error()}}
	}
	host := u.Hostname()
	port := 4222
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, &config.Error{Problems: []string{"nats.url: bad port " + p}}
		}
	}
	if err := portFree(host, port); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(filepath.Join(cfg.Dev.DataDir, "nats"))
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(&server.Options{ServerName: "sendid-dev", Host: host, Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats did not start on %s:%d (is the port in use?)", host, port)
	}
	cfg.NATS.URL = ns.ClientURL()
	log.Info("embedded NATS server with JetStream", zap.String("url", ns.ClientURL()), zap.String("store", dir))
	return ns, nil
}

// startDevSim serves the Braze simulator on a loopback port.
func startDevSim(cfg *config.Config, log *zap.Logger) (string, func(), error) {
	capN := 0
	for _, g := range cfg.Groups() {
		capN = max(capN, g.Cap)
	}
	sim := brazetest.New(brazetest.Options{DefaultCap: capN, DefaultPeriod: cfg.Quota.Period})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("braze simulator: %w", err)
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	u := "http://" + ln.Addr().String()
	log.Info("embedded Braze simulator", zap.String("url", u), zap.Int("cap", capN), zap.Duration("period", cfg.Quota.Period))
	return u, func() { _ = srv.Close(); <-done }, nil
}

const devBanner = `
  sendid-worker is running in -dev mode
    NATS (JetStream)  %s
    Braze simulator   %s
    metrics, health   %s/metrics  /readyz
    operator page     %s/ui

  Submit a job and read its result with the nats CLI
  (go install github.com/nats-io/natscli/nats@v0.5.0):

    nats --server %s sub demo.results &
    nats --server %s pub %s.jobs '{"campaign_id":"c1","send_id":"s1","reply_to":"demo.results"}'

  Ctrl-C stops the worker cleanly.

`
