package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/worker"
)

// ctlEnv runs sendidctl in-process with exactly the variables in vars.
func ctlEnv(t *testing.T, vars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, func(k string) string { return vars[k] }, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestConnectionFlagsAnywhere: the ways issue 17 lists of pointing
// sendidctl at a server all reach the same worker, and the commands' errors
// are sentences.
func TestConnectionFlagsAnywhere(t *testing.T) {
	t.Parallel()
	bin := buildWorker(t)
	server := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t))
	startWorker(t, bin, map[string]string{"SENDID_NATS_URL": server, "SENDID_DAILY_CAP": "50"}, "-dev", "-dev-dir", t.TempDir())

	cfgHome := t.TempDir()
	if err := os.MkdirAll(filepath.Join(cfgHome, "nats", "context"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cfgHome, "nats", "context", "staging.json"), fmt.Sprintf(`{"description":"","url":%q,"token":"","user":"","password":"","creds":"","nkey":"","cert":"","key":"","ca":"","nsc":""}`, server))
	yamlPath := filepath.Join(t.TempDir(), "sendid.yaml")
	writeFile(t, yamlPath, fmt.Sprintf("nats:\n  url: %s\nsubject_prefix: sendid\n", server))
	noEnv := map[string]string{}
	xdg := map[string]string{"XDG_CONFIG_HOME": cfgHome}

	for _, tc := range []struct {
		name string
		vars map[string]string
		args []string
	}{
		{"-s before", noEnv, []string{"-s", server, "quota"}},
		{"-s after", noEnv, []string{"quota", "-s", server}},
		{"--server= before", noEnv, []string{"--server=" + server, "quota", "default"}},
		{"--server between", noEnv, []string{"quota", "--server", server, "default", "--json"}},
		{"--context", xdg, []string{"--context", "staging", "quota"}},
		{"--context after", xdg, []string{"quota", "--context=staging"}},
		{"selected context", map[string]string{"XDG_CONFIG_HOME": cfgHome, "NATS_CONTEXT": "staging"}, []string{"quota"}},
		{"--config", noEnv, []string{"--config", yamlPath, "quota"}},
		{"--config after", noEnv, []string{"quota", "--config", yamlPath}},
	} {
		code, out, errOut := ctlEnv(t, tc.vars, tc.args...)
		if code != 0 || !strings.Contains(out, "default") {
			t.Errorf("%s: sendidctl %s: exit %d\n%s%s", tc.name, strings.Join(tc.args, " "), code, out, errOut)
		}
	}
	// context.txt is what "nats context select" writes.
	writeFile(t, filepath.Join(cfgHome, "nats", "context.txt"), "staging\n")
	if code, out, errOut := ctlEnv(t, xdg, "quota"); code != 0 || !strings.Contains(out, "default") {
		t.Errorf("context.txt: exit %d %s%s", code, out, errOut)
	}
	// An explicit flag beats the context.
	if code, _, errOut := ctlEnv(t, xdg, "--context", "staging", "-s", "nats://127.0.0.1:1", "quota", "--timeout", "2s"); code != 1 || !strings.Contains(errOut, "cannot reach a NATS server at nats://127.0.0.1:1") {
		t.Errorf("--server over --context: exit %d %s", code, errOut)
	}

	env := map[string]string{"SENDID_NATS_URL": server}
	// Errors in words, exit codes by kind.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"frobnicate"}, 2, `there is no command "frobnicate"`},
		{[]string{"pause", "nosuch"}, 1, `no app group "nosuch": no worker has started a lane for it`},
		{[]string{"resume", "nosuch"}, 1, `no app group "nosuch"`},
		{[]string{"quota", "nosuch"}, 1, `no app group "nosuch" (the workers have: default)`},
		{[]string{"pause", "default", "--until", "2020-01-01T00:00:00Z"}, 2, "--until 2020-01-01T00:00:00Z is in the past; a pause must end in the future"},
		{[]string{"pause", "default", "--until", "tomorrow"}, 2, `--until "tomorrow" is not an RFC 3339 time`},
		{[]string{"pause", "default", "--for", "1h", "--until", "2099-01-01T00:00:00Z"}, 2, "--until and --for are alternatives"},
		{[]string{"pause", "Bad.Name"}, 2, `"Bad.Name" is not an app group name`},
		{[]string{"job", "nosuch-job"}, 1, `no job "nosuch-job" in app group "default"`},
		{[]string{"dead", "rm", "nosuch-job"}, 1, `no dead letter with job id "nosuch-job"`},
		{[]string{"dead", "frob"}, 2, `dead "frob": the subcommands are ls, replay and rm`},
		{[]string{"--context", "nosuch", "quota"}, 1, `no nats context "nosuch"`},
		{[]string{"--context", "a", "--config", "b", "quota"}, 2, "--context and --config are alternatives"},
		{[]string{"--wait", "quota"}, 2, "flag --wait before the command is not a connection flag"},
		{[]string{"-s", "nats://127.0.0.1:1", "quota", "--timeout", "2s"}, 1, "cannot reach a NATS server at nats://127.0.0.1:1 (from -s); is it running?"},
	} {
		code, out, errOut := ctlEnv(t, env, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("sendidctl %s: exit %d (want %d), stderr %q (want %q) stdout %q", strings.Join(tc.args, " "), code, tc.code, errOut, tc.want, out)
		}
		if strings.Contains(errOut, "nats: API error") || strings.Contains(errOut, "usage: usage") {
			t.Errorf("sendidctl %s: raw error: %s", strings.Join(tc.args, " "), errOut)
		}
	}

	// Empty lists are [] in JSON.
	if code, out, _ := ctlEnv(t, env, "dead", "ls", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("dead ls --json with no dead letters: %d %q", code, out)
	}
	if code, out, _ := ctlEnv(t, env, "dead", "rm", "--all", "--json"); code != 0 || strings.TrimSpace(out) != `{"removed":[]}` {
		t.Errorf("dead rm --all --json with no dead letters: %d %q", code, out)
	}

	// job <id>: a created job, and one waiting behind a pause.
	if code, out, errOut := ctlEnv(t, env, "submit", "--campaign", "c", "--send-id", "s1", "--id", "job-1", "--wait"); code != 0 {
		t.Fatalf("submit: %d %s%s", code, out, errOut)
	}
	code, out, errOut := ctlEnv(t, env, "job", "job-1")
	if code != 0 || !strings.Contains(out, "status     created") || !strings.Contains(out, "send id    s1") || !strings.Contains(out, "attempts   1") || !strings.Contains(out, "in doubt   no") {
		t.Fatalf("job job-1: %d\n%s%s", code, out, errOut)
	}
	var v jobView
	if code, out, _ := ctlEnv(t, env, "job", "job-1", "--json"); code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Status != "created" || v.Result == nil || v.Result.SendID != "s1" {
		t.Fatalf("job --json: %d %q", code, out)
	}
	if code, _, errOut := ctlEnv(t, env, "job", "job-1", "--group", "eu"); code != 1 || !strings.Contains(errOut, `no job "job-1" in app group "eu"`) {
		t.Errorf("job in another group: %d %s", code, errOut)
	}

	// pause without an end lasts until resumed, and says so.
	if code, out, errOut := ctlEnv(t, env, "pause", "default"); code != 0 || !strings.Contains(out, "paused default until resumed") {
		t.Fatalf("pause: %d %s%s", code, out, errOut)
	}
	for i := range 2 {
		if code, out, errOut := ctlEnv(t, env, "submit", "--campaign", "c", "--send-id", fmt.Sprint("w", i), "--id", fmt.Sprint("job-w", i)); code != 0 {
			t.Fatalf("submit: %d %s%s", code, out, errOut)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, errOut = ctlEnv(t, env, "job", "job-w1", "--json")
		if code == 0 && json.Unmarshal([]byte(out), &v) == nil && v.Status == "waiting" && v.Position != nil && *v.Position == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job job-w1 while paused: %d %s%s", code, out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, out, _ := ctlEnv(t, env, "quota"); code != 0 || !strings.Contains(out, "operator until resumed") {
		t.Errorf("quota while paused until resumed: %d\n%s", code, out)
	}
	if code, out, errOut := ctlEnv(t, env, "pause", "default", "--for", "1h", "--json"); code != 0 || !strings.Contains(out, `"until":"`) {
		t.Errorf("pause --for: %d %s%s", code, out, errOut)
	}
	if code, out, errOut := ctlEnv(t, env, "resume", "default"); code != 0 {
		t.Fatalf("resume: %d %s%s", code, out, errOut)
	}
}

// TestHelpAndVersion: help for every command exits 0 on stdout with the
// command's own flags and the connection flags.
func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	for _, n := range commandNames() {
		for _, args := range [][]string{{n, "-h"}, {n, "--help"}, {"help", n}, {"-s", "nats://x:1", n, "-h"}} {
			code, out, errOut := ctlEnv(t, nil, args...)
			if code != 0 || errOut != "" || !strings.Contains(out, "usage: sendidctl "+n) || !strings.Contains(out, "-s, --server string") {
				t.Errorf("sendidctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
			}
		}
	}
	code, out, _ := ctlEnv(t, nil, "quota", "-h")
	if code != 0 || !strings.Contains(out, "--json") || !strings.Contains(out, "--context string") {
		t.Errorf("quota -h: %d %s", code, out)
	}
	code, out, _ = ctlEnv(t, nil, "pause", "--help")
	if code != 0 || !strings.Contains(out, "--until string") || !strings.Contains(out, "--for duration") {
		t.Errorf("pause --help: %d %s", code, out)
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		if code, out, _ := ctlEnv(t, nil, args...); code != 0 || !strings.Contains(out, "commands:") {
			t.Errorf("sendidctl %v: %d %s", args, code, out)
		}
	}
	if code, _, errOut := ctlEnv(t, nil); code != 2 || !strings.Contains(errOut, "commands:") {
		t.Errorf("no arguments: %d %s", code, errOut)
	}
	if code, out, _ := ctlEnv(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "sendidctl ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: %d %q", code, out)
	}
}

func TestNATSContextFile(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	dir := filepath.Join(home, ".config", "nats", "context")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "prod.json"), `{"description":"prod","url":"tls://a:4222,tls://b:4222","token":"","user":"u","password":"p",
		"creds":"~/creds/${ACCOUNT}.creds","nkey":"","cert":"/c.pem","key":"/k.pem","ca":"~/ca.pem","nsc":"","jetstream_domain":"","color_scheme":""}`)
	vars := map[string]string{"HOME": home, "ACCOUNT": "ops"}
	c, err := loadNATSContext("prod", func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := conn{server: "tls://a:4222,tls://b:4222", user: "u", password: "p", creds: home + "/creds/ops.creds", tlsCert: "/c.pem", tlsKey: "/k.pem",
		tlsCA: home + "/ca.pem", source: "nats context prod"}
	if c != want {
		t.Errorf("context:\n got %+v\nwant %+v", c, want)
	}
	// An absolute path works as natscli's does.
	if c, err := loadNATSContext(filepath.Join(dir, "prod.json"), func(k string) string { return vars[k] }); err != nil || c.server != want.server {
		t.Errorf("by path: %+v %v", c, err)
	}
	if _, err := loadNATSContext("../etc", func(k string) string { return vars[k] }); err == nil {
		t.Error("a name with .. was accepted")
	}
	// Without XDG_CONFIG_HOME, context.txt under ~/.config/nats is the selection.
	writeFile(t, filepath.Join(home, ".config", "nats", "context.txt"), "prod")
	if n := selectedNATSContext(func(k string) string { return vars[k] }); n != "prod" {
		t.Errorf("selected context %q", n)
	}
	if got := redactURL("nats://u:p@h:1,tls://tok@h2"); got != "nats://[redacted]@h:1,tls://[redacted]@h2" {
		t.Errorf("redactURL: %s", got)
	}
}

func TestPausedColumn(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	reset := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		st   worker.GroupStatus
		want string
	}{
		{worker.GroupStatus{}, "no"},
		// The lane rechecks a spent quota every 2 minutes; the column shows the reset.
		{worker.GroupStatus{Paused: true, PauseReason: "quota", PausedUntil: now.Add(2 * time.Minute), NextReset: reset}, "quota until 2026-11-29T00:00:00Z"},
		{worker.GroupStatus{Paused: true, PauseReason: "quota", PausedUntil: now.Add(2 * time.Minute), NextReset: reset, BlockedUntil: now.Add(3 * time.Hour)}, "quota until 2026-11-28T13:00:00Z"},
		{worker.GroupStatus{Paused: true, PauseReason: "rate_limited", PausedUntil: now.Add(time.Minute), NextReset: reset}, "rate_limited until 2026-11-28T10:01:00Z"},
		{worker.GroupStatus{Paused: true, PauseReason: "operator", PausedUntil: queue.UntilResumed(now)}, "operator until resumed"},
	} {
		if got := pausedColumn(tc.st, now); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.st, got, tc.want)
		}
	}
}

func TestCompletion(t *testing.T) {
	t.Parallel()
	code, script, _ := ctlEnv(t, nil, "completion", "bash")
	if code != 0 {
		t.Fatalf("completion bash: %d", code)
	}
	file := filepath.Join(t.TempDir(), "sendidctl.bash")
	writeFile(t, file, script)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, tc := range []struct {
		line string
		want string
	}{
		{"sendidctl qu", "quota"},
		{"sendidctl -s nats://x:4222 qu", "quota"},
		{"sendidctl dead r", "replay rm"},
		{"sendidctl quota --js", "--json"},
		{"sendidctl pause eu --un", "--until"},
		{"sendidctl completion ", "bash zsh"},
		{"sendidctl help jo", "job"},
	} {
		words := strings.Fields(tc.line)
		if strings.HasSuffix(tc.line, " ") {
			words = append(words, "")
		}
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = fmt.Sprintf("%q", w)
		}
		prog := fmt.Sprintf(`source %q; COMP_WORDS=(%s); COMP_CWORD=%d; _sendidctl; echo "${COMPREPLY[*]}"`, file, strings.Join(quoted, " "), len(words)-1)
		out, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("%q: %q %v, want %q", tc.line, out, err, tc.want)
		}
	}
	code, script, _ = ctlEnv(t, nil, "completion", "zsh")
	if code != 0 || !strings.HasPrefix(script, "#compdef sendidctl") {
		t.Fatalf("completion zsh: %d", code)
	}
	if zsh, err := exec.LookPath("zsh"); err == nil {
		f := filepath.Join(t.TempDir(), "_sendidctl")
		writeFile(t, f, script)
		if out, err := exec.Command(zsh, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("zsh -n: %v %s", err, out)
		}
	}
	if code, _, errOut := ctlEnv(t, nil, "completion", "fish"); code != 2 || !strings.Contains(errOut, "there is bash and zsh") {
		t.Errorf("completion fish: %d %s", code, errOut)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
