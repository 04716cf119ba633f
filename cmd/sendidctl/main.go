// Command sendidctl is the operator's and upstream's CLI for sendid: submit
// a job (and wait for its result), show quotas, list and replay dead
// letters, pause and resume an app group on every worker replica.
// Connection flags are named as the nats CLI names them.
//
// Exit codes: 0 ok (job created), 1 error, 2 usage, 3 job failed,
// 4 job expired, 5 timed out waiting for a result.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK      = 0
	exitError   = 1
	exitUsage   = 2
	exitFailed  = 3
	exitExpired = 4
	exitTimeout = 5
)

var errUsage = errors.New("usage")

// exitError carries a specific exit code.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }

const usage = `usage: sendidctl <command> [flags]

commands:
  submit   [--group G] [--campaign C --send-id S --id I --not-after T --meta JSON] [--wait]   (or a JSON job on stdin)
  quota    [group]                 cap, used, remaining, next reset, backlog, pause state, drain ETA
  dead ls                          dead-lettered jobs
  dead replay <id>|--all [--reply-to S]  send dead letters back through admission
  pause <group> [--until RFC3339]  stop a group's calls on every replica
  resume <group>                   resume it
  orphans [fail <group>]           jobs waiting for groups no longer configured; fail answers them unknown_app_group

connection flags (every command): --server (default $SENDID_NATS_URL), --creds, --nkey,
  --tlscert, --tlskey, --tlsca, --prefix (default $SENDID_SUBJECT_PREFIX or sendid), --timeout, --json
`

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var err error
	switch args[0] {
	case "submit":
		err = cmdSubmit(ctx, args[1:], getenv, stdin, stdout)
	case "quota":
		err = cmdQuota(ctx, args[1:], getenv, stdout)
	case "dead":
		err = cmdDead(ctx, args[1:], getenv, stdout)
	case "pause", "resume":
		err = cmdPause(ctx, args[0], args[1:], getenv, stdout)
	case "orphans":
		err = cmdOrphans(ctx, args[1:], getenv, stdout) // orphans.go
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "sendidctl:", err)
	var ce *codedError
	switch {
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, errUsage):
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	return exitError
}
