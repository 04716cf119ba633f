// Command sendid-worker is the sendid daemon: it consumes send-ID creation
// jobs from NATS JetStream, paces and caps the calls to Braze's
// POST /sends/id/create per app group, and publishes every result. With -dev
// it embeds a NATS server and a Braze simulator so it runs on a fresh machine
// with nothing else installed.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sendid/sendid/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	err := run(ctx, os.Args[1:], os.Getenv, hup, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sendid-worker:", err)
		os.Exit(exitCode(err))
	}
}

// errUsage marks a bad command line.
var errUsage = errors.New("usage")

func exitCode(err error) int {
	var ce *config.Error
	if errors.As(err, &ce) || errors.Is(err, errUsage) {
		return 2
	}
	return 1
}
