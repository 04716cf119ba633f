package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/queue"
)

// checkAccount is -check-config's look at NATS: when a server answers, the
// app groups must fit the account's JetStream consumer limit. An unreachable
// server is reported and not an error: the configuration may be checked
// where NATS is not.
func checkAccount(ctx context.Context, cfg *config.Config, out io.Writer) error {
	nc, err := queue.Connect(queue.ConnOptions{
		URL: cfg.NATS.URL, Name: cfg.NATS.Name + " check-config", CredsFile: cfg.NATS.CredsFile, NKeyFile: cfg.NATS.NKeyFile,
		CAFile: cfg.NATS.TLS.CAFile, CertFile: cfg.NATS.TLS.CertFile, KeyFile: cfg.NATS.TLS.KeyFile, Log: zap.NewNop(),
	})
	if err != nil {
		fmt.Fprintf(out, "nats not reachable, account limits not checked: %v\n", err)
		return nil
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	limit, err := queue.ConsumerLimit(cctx, js, cfg.Streams.Replicas)
	if err != nil {
		fmt.Fprintf(out, "nats account limits not checked: %v\n", err)
		return nil
	}
	groups := len(cfg.Groups())
	if err := queue.CheckGroupsFit(groups, limit); err != nil {
		var gl *queue.GroupLimitError
		if errors.As(err, &gl) {
			return &config.Error{Problems: []string{"app_groups: " + err.Error()}}
		}
		return err
	}
	if limit > 0 {
		fmt.Fprintf(out, "nats account allows %d consumers per stream: %d app group(s) plus admission fit\n", limit, groups)
	} else {
		fmt.Fprintf(out, "nats account sets no consumer limit\n")
	}
	return nil
}

// logSetupFailure logs why the streams and buckets are not ready; app
// groups that cannot fit the account's consumer limit get their own error
// line with the numbers (the worker keeps retrying: the limit may be raised).
func logSetupFailure(log *zap.Logger, attempt int, err error) {
	var gl *queue.GroupLimitError
	if errors.As(err, &gl) {
		log.Error("app groups exceed the account's JetStream consumer limit; retrying", zap.Int("attempt", attempt),
			zap.Int("app_groups", gl.Groups), zap.Int("consumers_needed", gl.Groups+1), zap.Int("consumers_allowed", gl.Allowed), zap.Error(err))
		return
	}
	log.Warn("jetstream setup failed; retrying", zap.Int("attempt", attempt), zap.Error(err))
}
