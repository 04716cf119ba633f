package main

import (
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/internal/ops"
	"github.com/sendid/sendid/queue"
)

// adminAccess reads the operators' admin token (the one the operator page
// uses too) and warns about credential files that other users may read. The
// token never reaches a log line.
func adminAccess(cfg *config.Config, getenv func(string) string, log *zap.Logger) (ops.Admin, error) {
	tok, err := cfg.AdminToken(getenv)
	if err != nil {
		return ops.Admin{}, err
	}
	for _, w := range cfg.FilePermissionWarnings(getenv) {
		log.Warn("credential file is readable by other users", zap.String("setting", w.Setting), zap.String("path", w.Path),
			zap.String("mode", fmt.Sprintf("%04o", w.Mode.Perm())), zap.Bool("world_readable", w.WorldReadable))
	}
	if tok.IsZero() && !cfg.HTTPAdmin.AllowLoopback {
		log.Warn("no admin token and http_admin.allow_loopback is off: PUT /loglevel and pprof answer 403 to everyone")
	}
	return ops.Admin{Token: tok.Reveal(), AllowLoopback: cfg.HTTPAdmin.AllowLoopback}, nil
}

// checkSecurity is -check-config's part: the admin token must load, and
// credential files readable by other users are warned about.
func checkSecurity(cfg *config.Config, getenv func(string) string, out io.Writer) error {
	if _, err := cfg.AdminToken(getenv); err != nil {
		return err
	}
	for _, w := range cfg.FilePermissionWarnings(getenv) {
		fmt.Fprintln(out, "warning:", w)
	}
	return nil
}

// storageHint names the settings to change when the streams' byte limits do
// not fit the account's or the server's JetStream storage.
func storageHint(err error, cfg *config.Config) error {
	if !queue.IsStorageExceeded(err) {
		return err
	}
	return fmt.Errorf("%w: streams.max_bytes (%d) and streams.results_max_bytes (%d) are reserved from the JetStream storage (times streams.replicas on an account with a flat limit); lower them, or set -1 for unlimited", err, cfg.Streams.MaxBytes, cfg.Streams.ResultsMaxBytes)
}
