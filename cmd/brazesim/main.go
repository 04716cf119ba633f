// Command brazesim serves the Braze POST /sends/id/create simulator
// (package braze/brazetest) over HTTP for compose files, end-to-end scripts
// and manual tests. Every flag can also be set with an environment variable
// BRAZESIM_<FLAG> (upper case, dashes as underscores).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/sendid/sendid/braze/brazetest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "brazesim:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, getenv func(string) string) error {
	fs := flag.NewFlagSet("brazesim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:9090", "listen address")
	capN := fs.Int("cap", 100, "send IDs per workspace per period")
	period := fs.Duration("period", 24*time.Hour, "quota period (aligned to multiples since the Unix epoch; 24h = UTC days)")
	used := fs.Int("used", 0, "send IDs already used in the current period (every configured key)")
	keys := fs.String("keys", "", "comma-separated API keys, one workspace each (empty: any non-empty key is accepted)")
	campaigns := fs.String("campaigns", "", "comma-separated known campaign ids (empty: any)")
	lower := fs.Bool("lower-case-headers", false, "send x-ratelimit-* header names in lower case")
	repeat := fs.String("repeat", "success", "what a repeated pair does: success, charge or reject")
	failFirst := fs.Int("fail-first", 0, "fail the first N calls of every pair")
	failStatus := fs.Int("fail-status", 503, "status for -fail-first")
	errorRate := fs.Float64("error-rate", 0, "fraction of calls answered with a random 5xx")
	hangRate := fs.Float64("hang-rate", 0, "fraction of calls that hang until the client gives up")
	latency := fs.Duration("latency", 0, "latency added to every call")
	debug := fs.Bool("debug", false, "log every request")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv("BRAZESIM_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))); v != "" && envErr == nil {
			set := false
			fs.Visit(func(g *flag.Flag) { set = set || g.Name == f.Name })
			if !set { // flags win over env
				if err := f.Value.Set(v); err != nil {
					envErr = fmt.Errorf("%w: BRAZESIM_%s: %v", errUsage, strings.ToUpper(f.Name), err)
				}
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	opts := brazetest.Options{
		DefaultCap: *capN, DefaultPeriod: *period, LowerCaseHeaders: *lower,
		FailFirst: *failFirst, FailFirstStatus: *failStatus, ErrorRate: *errorRate, HangRate: *hangRate, Latency: *latency,
	}
	switch *repeat {
	case "success":
		opts.Repeat = brazetest.RepeatSuccess
	case "charge":
		opts.Repeat = brazetest.RepeatCharge
	case "reject":
		opts.Repeat = brazetest.RepeatReject
	default:
		return fmt.Errorf("%w: -repeat must be success, charge or reject", errUsage)
	}
	for _, k := range splitList(*keys) {
		opts.Workspaces = append(opts.Workspaces, brazetest.Workspace{Key: k, Cap: *capN, Period: *period, Used: *used})
	}
	opts.Campaigns = splitList(*campaigns)

	log, err := zap.NewProduction()
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if len(opts.Workspaces) == 0 {
		log.Warn("no keys configured: any non-empty bearer token is accepted, one workspace per token")
	}

	sim := brazetest.New(opts)
	var h http.Handler = sim
	if *debug {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			log.Debug("request", zap.String("method", r.Method), zap.String("path", r.URL.Path))
			sim.ServeHTTP(w, r)
		})
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	url := "http://" + ln.Addr().String()
	fmt.Println(url)
	log.Info("braze simulator listening", zap.String("url", url), zap.Int("cap", *capN), zap.Duration("period", *period),
		zap.Int("workspaces", len(opts.Workspaces)), zap.Float64("error_rate", *errorRate), zap.Duration("latency", *latency))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	<-errc
	st := sim.Stats()
	log.Info("braze simulator stopped", zap.Int("calls", st.Calls), zap.Int("created", st.Created),
		zap.Int("over_cap", st.OverCap), zap.Int("pairs_twice", st.PairsTwice), zap.Int("faults", st.Faults))
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
