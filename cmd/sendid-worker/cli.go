package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sendid/sendid/config"
)

// flagUsage is the text -h prints.
func flagUsage(fs *flag.FlagSet) string {
	var b strings.Builder
	b.WriteString(`usage: sendid-worker [flags]

The sendid daemon: NATS JetStream jobs in, Braze POST /sends/id/create calls
out, paced and capped per app group. Configuration: defaults < YAML file
(-config) < SENDID_* environment < flags; docs/configuration.md lists every
key. Exit codes: 0 clean shutdown, 1 runtime failure, 2 bad configuration
or usage.

flags:
`)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// devDefaultHTTP is where -dev serves HTTP unless an address is given: a
// development machine's loopback, not every interface.
const devDefaultHTTP = "127.0.0.1:8080"

// devLoopback moves -dev's HTTP listener to loopback when neither the
// file, the environment nor a flag chose an address.
func devLoopback(f flags, cfg *config.Config, getenv func(string) string) {
	if _, byFlag := f.set["http-addr"]; f.dev && !byFlag && getenv("SENDID_HTTP_ADDR") == "" && cfg.HTTPAddr == config.Default().HTTPAddr {
		cfg.HTTPAddr = devDefaultHTTP
	}
}

// httpURL is a URL a browser on this machine can open for a listen
// address: an empty or unspecified host becomes 127.0.0.1.
func httpURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// portFree reports at once when -dev's NATS port is taken, instead of
// waiting for an embedded server that cannot start.
func portFree(host string, port int) error {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("embedded nats: %s is in use (another nats-server or sendid-worker -dev?); choose another port with SENDID_NATS_URL or -nats-url: %w", addr, err)
	}
	return ln.Close()
}

// logShutdown logs the signal that starts a shutdown. It returns when done
// ends (the worker stopped or the signal came).
func logShutdown(sig, done context.Context, timeout time.Duration, log *zap.Logger) {
	<-done.Done()
	if sig.Err() != nil {
		log.Info("shutting down: finishing the job in flight", zap.String("cause", context.Cause(sig).Error()), zap.Duration("shutdown_timeout", timeout))
	}
}

// logLevelChanges logs every change of the level made through /loglevel.
func logLevelChanges(next http.Handler, level zap.AtomicLevel, path string, log *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path || r.Method != http.MethodPut {
			next.ServeHTTP(w, r)
			return
		}
		before := level.Level()
		next.ServeHTTP(w, r)
		if after := level.Level(); after != before {
			// At the new level (info at least), so the line shows.
			log.Log(max(after, zapcore.InfoLevel), "log level changed", zap.Stringer("from", before), zap.Stringer("to", after), zap.String("remote", r.RemoteAddr))
		}
	})
}
