package config

import (
	"fmt"
	"io/fs"
	"os"
)

// Stream size defaults (streams.max_bytes, streams.results_max_bytes).
const (
	DefaultStreamMaxBytes  = 1 << 30
	DefaultResultsMaxBytes = 256 << 20
)

// HTTPAdmin guards the HTTP endpoints that change the process or expose its
// internals: PUT /loglevel and /debug/pprof/. A request passes with the
// operators' admin token (AdminToken: admin_token_file, SENDID_ADMIN_TOKEN),
// sent as "Authorization: Bearer <token>", or, when AllowLoopback, from a
// loopback peer. With neither, those endpoints answer 403 to everyone.
type HTTPAdmin struct {
	AllowLoopback bool `yaml:"allow_loopback"` // true
}

// validateSecurity checks the settings that bound what a publisher controls.
func (c *Config) validateSecurity(add func(string, ...any)) {
	for _, x := range []struct {
		key string
		v   int64
	}{{"streams.max_bytes", c.Streams.MaxBytes}, {"streams.results_max_bytes", c.Streams.ResultsMaxBytes}} {
		if x.v != -1 && x.v < 1<<20 {
			add("%s: %d must be at least 1048576 (1 MiB), or -1 for unlimited", x.key, x.v)
		}
	}
	for name, g := range c.AppGroups {
		if g.MaxBacklog < 0 {
			add("app_groups.%s.max_backlog: %d must be >= 0 (0: unlimited)", name, g.MaxBacklog)
		}
		for i, pat := range g.ReplySubjects {
			if !subjectPattern.MatchString(pat) {
				add("app_groups.%s.reply_subjects[%d]: %q is not a NATS subject pattern", name, i, pat)
			}
		}
	}
}

// SecretFile is a file holding a credential, with the setting that names it.
type SecretFile struct {
	Setting string
	Path    string
}

// SecretFiles lists the credential files the configuration names: API key
// files, NATS creds, nkey seed and TLS key, and the admin token file.
func (c *Config) SecretFiles(getenv func(string) string) []SecretFile {
	var out []SecretFile
	for _, g := range c.Groups() {
		if g.APIKeyFile != "" {
			out = append(out, SecretFile{"app_groups." + g.Name + ".api_key_file", g.APIKeyFile})
		}
	}
	for _, f := range []SecretFile{
		{"nats.creds_file", c.NATS.CredsFile}, {"nats.nkey_file", c.NATS.NKeyFile}, {"nats.tls.key_file", c.NATS.TLS.KeyFile},
		{"admin_token_file", c.AdminTokenFile},
	} {
		if f.Setting == "admin_token_file" && getenv("SENDID_ADMIN_TOKEN_FILE") != "" {
			f.Path = getenv("SENDID_ADMIN_TOKEN_FILE")
		}
		if f.Path != "" {
			out = append(out, f)
		}
	}
	return out
}

// PermissionWarning is a credential file that other users may read.
type PermissionWarning struct {
	SecretFile
	Mode          fs.FileMode
	WorldReadable bool // else readable by its group only
}

func (w PermissionWarning) String() string {
	who := "its group"
	if w.WorldReadable {
		who = "every user"
	}
	return fmt.Sprintf("%s: %s is readable by %s (mode %04o); chmod 600 or 400 it", w.Setting, w.Path, who, w.Mode.Perm())
}

// FilePermissionWarnings stats every credential file (following symbolic
// links, as reading it does) and reports those readable by their group or by
// everyone. Files that cannot be read are reported by the code that reads
// them, not here.
func (c *Config) FilePermissionWarnings(getenv func(string) string) []PermissionWarning {
	var out []PermissionWarning
	for _, f := range c.SecretFiles(getenv) {
		st, err := os.Stat(f.Path)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if m := st.Mode().Perm(); m&0o044 != 0 {
			out = append(out, PermissionWarning{SecretFile: f, Mode: m, WorldReadable: m&0o004 != 0})
		}
	}
	return out
}
