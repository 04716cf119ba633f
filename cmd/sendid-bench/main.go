// Command sendid-bench measures sendid-worker against a bare baseline on one
// machine, in one run: an embedded NATS server and the Braze simulator serve
// both; the worker runs as a subprocess so that its CPU and memory are its
// own. It prints a table with each target beside its figure.
//
//	go run ./cmd/sendid-bench                 # reduced size, a few minutes
//	go run ./cmd/sendid-bench -size full      # the sizes of the issue (1,000,000 deferred jobs)
//	go run ./cmd/sendid-bench -size smoke     # seconds; CI checks it completes
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == bareCommand {
		err = runBare(ctx, os.Args[2:]) // bare.go: row b's loop in a process of its own
	} else {
		err = run(ctx, os.Args[1:])
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sendid-bench:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
