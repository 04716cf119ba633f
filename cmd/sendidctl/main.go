// Command sendidctl is the operator's and upstream's CLI for sendid: submit
// a job (and wait for its result), show quotas, look up a job, list, replay
// and remove dead letters, pause and resume an app group on every worker
// replica. Connection flags are named as the nats CLI names them and may
// stand anywhere on the command line; --context reads a nats CLI context
// and --config the worker's own YAML file.
//
// Exit codes: 0 ok (job created), 1 error, 2 usage, 3 job failed,
// 4 job expired, 5 timed out waiting for a result.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
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

// codedError carries a specific exit code.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// command is one sendidctl command. Adding a command is adding a file whose
// init calls register.
type command struct {
	name    string
	args    string // the positional arguments, for the usage line
	summary string
	// setup defines the command's own flags (the connection flags are
	// already on fs) and returns what runs it with the positional arguments.
	setup func(fs *flag.FlagSet, e *env) func(ctx context.Context, pos []string) error
}

// env is what a command runs with: the connection and the process's streams.
type env struct {
	conn   *conn
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
}

var commands = map[string]*command{}

// register adds a command; it panics on a duplicate name (a programming error).
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("sendidctl: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func usage() string {
	var b strings.Builder
	b.WriteString("usage: sendidctl [connection flags] <command> [flags] [arguments]\n\ncommands:\n")
	for _, n := range commandNames() {
		c := commands[n]
		fmt.Fprintf(&b, "  %s\n      %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	b.WriteString(`
connection flags (anywhere on the command line, as the nats CLI names them):
  -s, --server URL   NATS servers (default: $SENDID_NATS_URL, else the selected nats context, else nats://127.0.0.1:4222)
  --context NAME     a nats CLI context (~/.config/nats/context/NAME.json)
  --config FILE      the worker's YAML file: its nats section and subject_prefix
  --creds, --nkey, --tlscert, --tlskey, --tlsca, --prefix, --timeout, --json

"sendidctl help <command>" or "sendidctl <command> -h" shows a command's flags.
`)
	return b.String()
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	name, rest, err := splitCommand(args)
	if err != nil {
		fmt.Fprintln(stderr, "sendidctl:", err)
		fmt.Fprint(stderr, usage())
		return exitUsage
	}
	switch name {
	case "":
		if hasHelp(args) {
			fmt.Fprint(stdout, usage())
			return exitOK
		}
		fmt.Fprint(stderr, usage())
		return exitUsage
	case "help":
		if len(rest) == 0 || rest[0] == "-h" || rest[0] == "--help" {
			fmt.Fprint(stdout, usage())
			return exitOK
		}
		c, ok := commands[rest[0]]
		if !ok {
			fmt.Fprintf(stderr, "sendidctl: there is no command %q\n", rest[0])
			fmt.Fprint(stderr, usage())
			return exitUsage
		}
		fs, _ := newFlagSet(c, &env{getenv: getenv, stdin: stdin, stdout: stdout})
		printCommandHelp(stdout, c, fs)
		return exitOK
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "sendidctl: there is no command %q; the commands are %s\n", name, strings.Join(commandNames(), ", "))
		return exitUsage
	}
	e := &env{getenv: getenv, stdin: stdin, stdout: stdout}
	fs, exec := newFlagSet(c, e)
	pos, err := parse(fs, rest)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printCommandHelp(stdout, c, fs)
		return exitOK
	case err == nil:
		err = e.conn.resolve(fs, getenv)
	}
	if err == nil {
		err = exec(ctx, pos)
	}
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "sendidctl:", strings.TrimPrefix(inWords(err), errUsage.Error()+": "))
	var ce *codedError
	switch {
	case errors.As(err, &ce):
		return ce.code
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "usage: sendidctl %s %s  (sendidctl %s -h for its flags)\n", c.name, c.args, c.name)
		return exitUsage
	}
	return exitError
}

// newFlagSet builds a command's flag set: the connection flags, then the
// command's own.
func newFlagSet(c *command, e *env) (*flag.FlagSet, func(context.Context, []string) error) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.conn = addConnFlags(fs)
	return fs, c.setup(fs, e)
}

// printCommandHelp prints a command's usage, its own flags, then the
// connection flags.
func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: sendidctl %s\n\n%s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	conn := map[string]bool{}
	for _, n := range connFlagNames() {
		conn[strings.TrimLeft(n, "-")] = true
	}
	section := func(title string, want bool) {
		first := true
		fs.VisitAll(func(f *flag.Flag) {
			if conn[f.Name] != want || f.Name == "s" {
				return
			}
			if first {
				fmt.Fprintf(w, "\n%s:\n", title)
				first = false
			}
			name := "--" + f.Name
			if f.Name == "server" {
				name = "-s, --server"
			}
			typ, help := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "%s\n      %s", strings.TrimRight("  "+name+" "+typ, " "), help)
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0s" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
	}
	section("flags", false)
	section("connection flags", true)
}

// splitCommand finds the command word among the arguments: connection flags
// may come before it (sendidctl -s URL quota) as well as after it. It
// returns the command and every other argument in order.
func splitCommand(args []string) (string, []string, error) {
	probe := flag.NewFlagSet("sendidctl", flag.ContinueOnError)
	addConnFlags(probe)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return "", nil, fmt.Errorf("%w: the command comes before --", errUsage)
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			rest := append(append([]string{}, args[:i]...), args[i+1:]...)
			return a, rest, nil
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "h" || name == "help" {
			continue
		}
		f := probe.Lookup(name)
		if f == nil {
			return "", nil, fmt.Errorf("%w: flag %s before the command is not a connection flag (command flags go after the command)", errUsage, a)
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() || hasValue {
			continue
		}
		i++ // the flag's value
	}
	return "", nil, nil
}

func hasHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "--help" || a == "-help" {
			return true
		}
	}
	return false
}

// parse parses flags wherever they stand among the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
