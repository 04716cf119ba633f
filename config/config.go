// Package config owns sendid's configuration: one Config struct with its
// defaults, strict YAML decoding (unknown keys are errors naming the key),
// SENDID_* environment overrides, Validate (every problem, each naming its
// key), the app groups resolved with their API key sources, and Secret, a
// string that never prints. Flags are applied by cmd/* on top of Load.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultGroup is the app group configured by the SENDID_* variables and
// addressed by the subject <prefix>.jobs.
const DefaultGroup = "default"

// Secret is a credential. It prints as [redacted] in fmt, JSON and YAML.
type Secret string

func (Secret) String() string               { return "[redacted]" }
func (Secret) GoString() string             { return "config.Secret([redacted])" }
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"[redacted]"`), nil }
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }
func (Secret) MarshalYAML() (any, error)    { return "[redacted]", nil }
func (s Secret) Reveal() string             { return string(s) }
func (s Secret) Equal(o Secret) bool        { return s == o }
func (s Secret) IsZero() bool               { return s == "" }
func (s *Secret) UnmarshalYAML(*yaml.Node) error {
	return errors.New("secrets come from env or files, never from the YAML file")
}

// Config is everything sendid-worker reads. Each field's comment gives its
// default.
type Config struct {
	NATS          NATS          `yaml:"nats"`
	Braze         Braze         `yaml:"braze"`
	Quota         Quota         `yaml:"quota"`
	SubjectPrefix string        `yaml:"subject_prefix"` // "sendid"
	HTTPAddr      string        `yaml:"http_addr"`      // ":8080"
	Log           Log           `yaml:"log"`
	MaxJobBytes   int           `yaml:"max_job_bytes"`    // 65536
	Shutdown      time.Duration `yaml:"shutdown_timeout"` // 25s
	Streams       Streams       `yaml:"streams"`
	// ReplySubjects narrows where results may go: NATS subject patterns
	// (wildcards allowed). Empty: any subject the built-in rules accept.
	ReplySubjects []string            `yaml:"reply_subjects"`
	AppGroups     map[string]AppGroup `yaml:"app_groups"`
	Dev           Dev                 `yaml:"dev"`
	Gateway       Gateway             `yaml:"gateway"` // the Braze-compatible HTTP front door (config/gateway.go)
	UI            UI                  `yaml:"ui"`
	// AdminTokenFile holds the operators' admin token (or set
	// SENDID_ADMIN_TOKEN / SENDID_ADMIN_TOKEN_FILE). None.
	AdminTokenFile string `yaml:"admin_token_file"`
	// LaneFailover is how long a group's owning replica may stop pulling
	// before another replica takes the group over, and how long the job
	// in flight of a replica that died waits before it is redelivered.
	LaneFailover time.Duration `yaml:"lane_failover"` // 5s; SENDID_LANE_FAILOVER
	// HTTPAdmin guards the HTTP endpoints that change or expose the process
	// (PUT /loglevel, pprof); see security.go.
	HTTPAdmin HTTPAdmin `yaml:"http_admin"`
}

// NATS is the connection to the NATS servers.
type NATS struct {
	URL           string        `yaml:"url"`            // "nats://127.0.0.1:4222", comma-separated
	Name          string        `yaml:"name"`           // "sendid-worker@<hostname>"
	CredsFile     string        `yaml:"creds_file"`     // none
	NKeyFile      string        `yaml:"nkey_file"`      // none: a file holding an nkey seed
	TLS           TLS           `yaml:"tls"`            // off
	ReconnectWait time.Duration `yaml:"reconnect_wait"` // 2s, jittered
}

// TLS configures the NATS client's TLS.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether any TLS setting is present.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// Braze is how Braze is called.
type Braze struct {
	URL          string        `yaml:"url"`           // required unless -dev
	Timeout      time.Duration `yaml:"timeout"`       // 20s per call (SENDID_BRAZE_TIMEOUT); must be shorter than shutdown_timeout
	MaxAttempts  int           `yaml:"max_attempts"`  // 8
	RetryBackoff time.Duration `yaml:"retry_backoff"` // 500ms, doubled per attempt, jittered
	RetryMax     time.Duration `yaml:"retry_max"`     // 1m
}

// Quota holds settings shared by every app group.
type Quota struct {
	Period time.Duration `yaml:"period"` // 24h
	// ProbeInterval: when the rest of a period is blocked only by calls
	// that may not have been charged (5xx, timeouts), a lane makes one
	// probe call per interval; its answer settles the count.
	ProbeInterval time.Duration `yaml:"probe_interval"` // 5m
}

// Log configures zap.
type Log struct {
	Level  string `yaml:"level"`  // "info"
	Format string `yaml:"format"` // "json" ("console" in -dev)
}

// Streams configures the JetStream assets.
type Streams struct {
	Replicas        int           `yaml:"replicas"`         // 1
	DuplicateWindow time.Duration `yaml:"duplicate_window"` // 2m
	Results         bool          `yaml:"results"`          // true: keep SENDID_RESULTS on <prefix>.results.>
	ResultsMaxAge   time.Duration `yaml:"results_max_age"`  // 72h
	JobRecordTTL    time.Duration `yaml:"job_record_ttl"`   // 168h: how long a finished job id answers duplicates
	PairTTL         time.Duration `yaml:"pair_ttl"`         // 720h: how long a created pair is never sent again
	RecheckInterval time.Duration `yaml:"recheck_interval"` // 1m: safety-net poll of idle lanes
	// MaxBytes bounds stream SENDID (jobs, admitted FIFOs, dead letters of
	// every group together); -1: unlimited. When it is full, publishing a
	// job fails (discard new) and jobs already stored are answered
	// backlog_full rather than admitted.
	MaxBytes int64 `yaml:"max_bytes"` // 1 GiB
	// ResultsMaxBytes bounds SENDID_RESULTS (oldest results go first); -1:
	// unlimited.
	ResultsMaxBytes int64 `yaml:"results_max_bytes"` // 256 MiB
}

// Dev configures -dev mode.
type Dev struct {
	DataDir string `yaml:"data_dir"` // "./sendid-dev-data"
	// GatewayTLSAddr is where -dev serves the gateway over HTTPS with a
	// self-signed certificate kept in the data folder.
	GatewayTLSAddr string `yaml:"gateway_tls_addr"` // "127.0.0.1:8443"
}

// AppGroup is one Braze workspace.
type AppGroup struct {
	BrazeURL   string `yaml:"braze_url"`    // SENDID_BRAZE_URL / braze.url
	APIKeyEnv  string `yaml:"api_key_env"`  // variable holding the key
	APIKeyFile string `yaml:"api_key_file"` // file holding the key (re-read on change and SIGHUP)
	DailyCap   *int   `yaml:"daily_cap"`    // 100
	Burst      *int   `yaml:"burst"`        // 10
	Timezone   string `yaml:"timezone"`     // "UTC"
	// InDoubt is what a redelivered job does when an earlier call may have
	// reached Braze without its answer recorded: "retry" (call again) or
	// "fail" (no call; failed / outcome_unknown). SENDID_IN_DOUBT for
	// default. Default "retry".
	InDoubt string `yaml:"in_doubt"`
	// Gateway tokens authenticate HTTP callers as this group besides its
	// API key, for producers that should not hold the Braze key.
	GatewayTokensFile string `yaml:"gateway_tokens_file"` // none: one token per line
	GatewayTokensEnv  string `yaml:"gateway_tokens_env"`  // none: tokens separated by commas
	// ReplySubjects is this group's own allow-list of reply subjects
	// (patterns); when set it applies instead of the top-level list.
	ReplySubjects []string `yaml:"reply_subjects"` // top-level reply_subjects
	// MaxBacklog bounds the jobs admitted and waiting in this group's FIFO;
	// beyond it admission answers failed/backlog_full. 0: unlimited.
	MaxBacklog int `yaml:"max_backlog"` // 0
}

// Default returns the configuration with every default applied.
func Default() *Config {
	host, _ := os.Hostname()
	return &Config{
		NATS:          NATS{URL: "nats://127.0.0.1:4222", Name: "sendid-worker@" + host, ReconnectWait: 2 * time.Second},
		Braze:         Braze{Timeout: 20 * time.Second, MaxAttempts: 8, RetryBackoff: 500 * time.Millisecond, RetryMax: time.Minute},
		Quota:         Quota{Period: 24 * time.Hour, ProbeInterval: 5 * time.Minute},
		SubjectPrefix: "sendid",
		HTTPAddr:      ":8080",
		Log:           Log{Level: "info", Format: "json"},
		MaxJobBytes:   64 << 10,
		Shutdown:      25 * time.Second,
		Streams: Streams{Replicas: 1, DuplicateWindow: 2 * time.Minute, Results: true, ResultsMaxAge: 72 * time.Hour,
			JobRecordTTL: 7 * 24 * time.Hour, PairTTL: 30 * 24 * time.Hour, RecheckInterval: time.Minute,
			MaxBytes: DefaultStreamMaxBytes, ResultsMaxBytes: DefaultResultsMaxBytes},
		Dev:          Dev{DataDir: "./sendid-dev-data", GatewayTLSAddr: DevGatewayTLSAddr},
		Gateway:      defaultGateway(),
		UI:           UI{Enabled: true},
		LaneFailover: 5 * time.Second,
		HTTPAdmin:    HTTPAdmin{AllowLoopback: true},
	}
}

// Error is a configuration problem; cmd/* exit with status 2 on it.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return "config: " + e.Problems[0]
	}
	return "config: " + strconv.Itoa(len(e.Problems)) + " problems:\n  " + strings.Join(e.Problems, "\n  ")
}

// EnvNames lists every environment variable sendid-worker reads (the
// deployment manifests are checked against it).
var EnvNames = []string{
	"SENDID_CONFIG", "SENDID_NATS_URL", "SENDID_BRAZE_URL", "SENDID_BRAZE_API_KEY", "SENDID_BRAZE_API_KEY_FILE",
	"SENDID_DAILY_CAP", "SENDID_BURST", "SENDID_QUOTA_PERIOD", "SENDID_TIMEZONE", "SENDID_MAX_ATTEMPTS",
	"SENDID_SUBJECT_PREFIX", "SENDID_HTTP_ADDR", "SENDID_LOG_LEVEL", "SENDID_LOG_FORMAT", "SENDID_MAX_JOB_BYTES",
	"SENDID_SHUTDOWN_TIMEOUT",
	"SENDID_IN_DOUBT", "SENDID_BRAZE_TIMEOUT",
	"SENDID_GATEWAY_ADDR", "SENDID_ADMIN_TOKEN", "SENDID_ADMIN_TOKEN_FILE",
	"SENDID_LANE_FAILOVER",
}

// Load applies defaults, then the YAML file at path (if any), then the
// SENDID_* variables read through getenv.
//
// A *Error lists every problem of the file and the variables. When the
// returned Config is not nil alongside it, it holds everything that did
// decode, so that a caller can validate the rest and report all problems in
// one pass (see Problems).
func Load(path string, getenv func(string) string) (*Config, error) {
	c := Default()
	var problems []string
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &Error{Problems: []string{err.Error()}}
		}
		p, err := c.decode(data)
		if err != nil {
			return nil, &Error{Problems: []string{fmt.Sprintf("%s: %v", path, err)}}
		}
		problems = append(problems, p...)
	}
	return c.withEnv(problems, getenv)
}

// Parse is Load for YAML already in memory (tests, fuzzing).
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	c := Default()
	problems, err := c.decode(data)
	if err != nil {
		return nil, &Error{Problems: []string{err.Error()}}
	}
	return c.withEnv(problems, getenv)
}

func (c *Config) withEnv(problems []string, getenv func(string) string) (*Config, error) {
	problems = append(problems, Problems(c.applyEnv(getenv))...)
	if len(problems) > 0 {
		return c, &Error{Problems: problems}
	}
	return c, nil
}

// Problems lists the problems of err: those of a *Error, else err itself
// (nil: none).
func Problems(err error) []string {
	var ce *Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		return ce.Problems
	}
	return []string{err.Error()}
}

// decode reads YAML into c. Problems with keys and values come back in the
// configuration's words (c keeps its defaults there); err is YAML that
// cannot be parsed at all.
func (c *Config) decode(data []byte) (problems []string, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == 0 {
		return nil, nil // empty file
	}
	problems = checkYAML(&doc, reflect.TypeFor[Config]())
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	derr := dec.Decode(c) // decodes what it can past a bad value
	if len(problems) == 0 && derr != nil && !errors.Is(derr, io.EOF) {
		// Something checkYAML does not know of: yaml's own words.
		var te *yaml.TypeError
		if errors.As(derr, &te) {
			return te.Errors, nil
		}
		return []string{derr.Error()}, nil
	}
	return problems, nil
}

// applyEnv reads the SENDID_* variables (README: Configuration).
func (c *Config) applyEnv(getenv func(string) string) error {
	var problems []string
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	num := func(name string, dst *int) bool {
		v := getenv(name)
		if v == "" {
			return false
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %q is not an integer", name, v))
			return false
		}
		*dst = n
		return true
	}
	dur := func(name string, dst *time.Duration) {
		v := getenv(name)
		if v == "" {
			return
		}
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %q is not a duration (like 10s or 24h)", name, v))
			return
		}
		*dst = d
	}
	str("SENDID_NATS_URL", &c.NATS.URL)
	str("SENDID_BRAZE_URL", &c.Braze.URL)
	num("SENDID_MAX_ATTEMPTS", &c.Braze.MaxAttempts)
	str("SENDID_SUBJECT_PREFIX", &c.SubjectPrefix)
	str("SENDID_HTTP_ADDR", &c.HTTPAddr)
	str("SENDID_LOG_LEVEL", &c.Log.Level)
	str("SENDID_LOG_FORMAT", &c.Log.Format)
	num("SENDID_MAX_JOB_BYTES", &c.MaxJobBytes)
	dur("SENDID_QUOTA_PERIOD", &c.Quota.Period)
	dur("SENDID_SHUTDOWN_TIMEOUT", &c.Shutdown)
	dur("SENDID_BRAZE_TIMEOUT", &c.Braze.Timeout)
	str("SENDID_GATEWAY_ADDR", &c.Gateway.Addr)
	dur("SENDID_LANE_FAILOVER", &c.LaneFailover)

	// The default group: present unless the file lists groups without it
	// and no SENDID_* variable for it is set.
	def, inFile := c.AppGroups[DefaultGroup]
	touched := false
	var capN, burst int
	if num("SENDID_DAILY_CAP", &capN) {
		def.DailyCap, touched = &capN, true
	}
	if num("SENDID_BURST", &burst) {
		def.Burst, touched = &burst, true
	}
	if v := getenv("SENDID_TIMEZONE"); v != "" {
		def.Timezone, touched = v, true
	}
	if v := getenv("SENDID_IN_DOUBT"); v != "" {
		def.InDoubt, touched = strings.TrimSpace(v), true
	}
	if v := getenv("SENDID_BRAZE_API_KEY_FILE"); v != "" {
		def.APIKeyFile, def.APIKeyEnv, touched = v, "", true
	} else if getenv("SENDID_BRAZE_API_KEY") != "" {
		def.APIKeyEnv, def.APIKeyFile, touched = "SENDID_BRAZE_API_KEY", "", true
	}
	if inFile || touched || len(c.AppGroups) == 0 {
		if def.APIKeyEnv == "" && def.APIKeyFile == "" {
			def.APIKeyEnv = "SENDID_BRAZE_API_KEY"
		}
		if c.AppGroups == nil {
			c.AppGroups = map[string]AppGroup{}
		}
		c.AppGroups[DefaultGroup] = def
	}
	if len(problems) > 0 {
		return &Error{Problems: problems}
	}
	return nil
}

// Group is an app group with every default applied.
type Group struct {
	Name       string
	BrazeURL   string
	APIKeyEnv  string
	APIKeyFile string
	Cap        int
	Burst      int
	Location   *time.Location
	InDoubt    string // InDoubtRetry or InDoubtFail
	// ReplySubjects is the group's reply allow-list: its own, else the
	// top-level one.
	ReplySubjects []string
	MaxBacklog    int
}

var groupName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// ValidGroupName reports whether s can name an app group: 1–64 characters
// of [a-z0-9_-] (it becomes a subject token and a KV key).
func ValidGroupName(s string) bool { return groupName.MatchString(s) }

// Groups resolves the app groups, sorted by name. Call Validate first.
func (c *Config) Groups() []Group {
	out := make([]Group, 0, len(c.AppGroups))
	for name, g := range c.AppGroups {
		r := Group{Name: name, BrazeURL: g.BrazeURL, APIKeyEnv: g.APIKeyEnv, APIKeyFile: g.APIKeyFile, Cap: 100, Burst: 10, Location: time.UTC,
			InDoubt: InDoubtRetry}
		if g.InDoubt != "" {
			r.InDoubt = g.InDoubt
		}
		if r.BrazeURL == "" {
			r.BrazeURL = c.Braze.URL
		}
		if g.DailyCap != nil {
			r.Cap = *g.DailyCap
		}
		if g.Burst != nil {
			r.Burst = *g.Burst
		}
		if g.Timezone != "" {
			if loc, err := time.LoadLocation(g.Timezone); err == nil {
				r.Location = loc
			}
		}
		r.ReplySubjects, r.MaxBacklog = c.ReplySubjects, g.MaxBacklog
		if len(g.ReplySubjects) > 0 {
			r.ReplySubjects = g.ReplySubjects
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Validate returns every problem, each naming its key. dev relaxes the
// Braze URL requirement (-dev supplies a simulator).
func (c *Config) Validate(dev bool) error {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	if strings.TrimSpace(c.NATS.URL) == "" {
		add("nats.url (SENDID_NATS_URL): must not be empty")
	}
	for _, u := range strings.Split(c.NATS.URL, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err != nil || pu.Host == "" {
			add("nats.url (SENDID_NATS_URL): %q is not a URL like nats://host:4222", redactUserInfo(c.NATS.URL, strings.TrimSpace(u)))
		}
	}
	if (c.NATS.TLS.CertFile == "") != (c.NATS.TLS.KeyFile == "") {
		add("nats.tls: cert_file and key_file go together")
	}
	if c.NATS.CredsFile != "" && c.NATS.NKeyFile != "" {
		add("nats: creds_file and nkey_file are alternatives; set one")
	}
	if c.Braze.URL != "" {
		checkURL(add, "braze.url (SENDID_BRAZE_URL)", c.Braze.URL)
	}
	if c.Braze.MaxAttempts < 1 {
		add("braze.max_attempts (SENDID_MAX_ATTEMPTS): must be >= 1")
	}
	if c.Braze.Timeout <= 0 {
		add("braze.timeout: must be > 0")
	}
	if c.Braze.RetryBackoff <= 0 || c.Braze.RetryMax < c.Braze.RetryBackoff {
		add("braze.retry_backoff, braze.retry_max: need 0 < retry_backoff <= retry_max")
	}
	if c.Quota.Period < time.Second {
		add("quota.period (SENDID_QUOTA_PERIOD): %s is shorter than 1s", c.Quota.Period)
	}
	if c.Quota.ProbeInterval < time.Second {
		add("quota.probe_interval: %s is shorter than 1s", c.Quota.ProbeInterval)
	}
	if !subjectToken.MatchString(c.SubjectPrefix) {
		add("subject_prefix (SENDID_SUBJECT_PREFIX): %q must be dot-separated tokens of [A-Za-z0-9_-]", c.SubjectPrefix)
	}
	if c.HTTPAddr == "" {
		add("http_addr (SENDID_HTTP_ADDR): must not be empty")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		add("log.level (SENDID_LOG_LEVEL): %q is not debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		add("log.format (SENDID_LOG_FORMAT): %q is not json or console", c.Log.Format)
	}
	if c.MaxJobBytes < 256 || c.MaxJobBytes > 8<<20 {
		add("max_job_bytes (SENDID_MAX_JOB_BYTES): %d is outside 256..8388608", c.MaxJobBytes)
	}
	if c.Shutdown <= 0 {
		add("shutdown_timeout (SENDID_SHUTDOWN_TIMEOUT): must be > 0")
	}
	if c.LaneFailover < time.Second || c.LaneFailover > 5*time.Minute {
		add("lane_failover (SENDID_LANE_FAILOVER): %s is outside 1s..5m", c.LaneFailover)
	}
	s := c.Streams
	if s.Replicas < 1 || s.Replicas > 5 {
		add("streams.replicas: %d is outside 1..5", s.Replicas)
	}
	if s.DuplicateWindow < time.Second || s.ResultsMaxAge < time.Minute || s.JobRecordTTL < time.Minute || s.PairTTL < time.Minute || s.RecheckInterval < time.Second {
		add("streams: duplicate_window >= 1s, results_max_age, job_record_ttl, pair_ttl >= 1m and recheck_interval >= 1s are required")
	}
	for i, pat := range c.ReplySubjects {
		if !subjectPattern.MatchString(pat) {
			add("reply_subjects[%d]: %q is not a NATS subject pattern", i, pat)
		}
	}
	c.validateGateway(add)
	if len(c.AppGroups) == 0 {
		add("app_groups: at least one app group is required")
	}
	names := make([]string, 0, len(c.AppGroups))
	for n := range c.AppGroups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := c.AppGroups[n]
		key := "app_groups." + n
		if !ValidGroupName(n) {
			add("%s: name must be 1-64 characters of [a-z0-9_-]", key)
		}
		if g.DailyCap != nil && (*g.DailyCap < 1 || *g.DailyCap > 100_000_000) {
			add("%s.daily_cap: %d is outside 1..100000000", key, *g.DailyCap)
		}
		if g.Burst != nil && (*g.Burst < 1 || *g.Burst > 100_000_000) {
			add("%s.burst: %d is outside 1..100000000", key, *g.Burst)
		}
		if g.Timezone != "" {
			if _, err := time.LoadLocation(g.Timezone); err != nil {
				add("%s.timezone: %q is not a known time zone", key, g.Timezone)
			}
		}
		if g.APIKeyEnv != "" && g.APIKeyFile != "" {
			add("%s: api_key_env and api_key_file are alternatives; set one", key)
		}
		if g.BrazeURL != "" {
			checkURL(add, key+".braze_url", g.BrazeURL)
		} else if c.Braze.URL == "" && !dev {
			add("%s: no Braze URL: set braze_url, or SENDID_BRAZE_URL", key)
		}
	}
	p = append(p, c.callProblems()...)
	c.validateSecurity(add)
	if len(p) > 0 {
		return &Error{Problems: p}
	}
	return nil
}

var (
	subjectToken   = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	subjectPattern = regexp.MustCompile(`^([^.\s*>]+|\*)(\.([^.\s*>]+|\*))*(\.>)?$|^>$`)
)

func checkURL(add func(string, ...any), key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		add("%s: %q is not an http(s) URL with a host", key, raw)
	}
}

// LoadKeys reads every group's API key from its variable or file. dev
// substitutes "dev-key" for a missing key.
func (c *Config) LoadKeys(getenv func(string) string, dev bool) (map[string]Secret, error) {
	keys := map[string]Secret{}
	var p []string
	for _, g := range c.Groups() {
		var v string
		switch {
		case g.APIKeyFile != "":
			b, err := os.ReadFile(g.APIKeyFile)
			if err != nil {
				p = append(p, fmt.Sprintf("app_groups.%s.api_key_file: %v", g.Name, err))
				continue
			}
			v = strings.TrimSpace(string(b))
		case g.APIKeyEnv != "":
			v = strings.TrimSpace(getenv(g.APIKeyEnv))
		}
		if v == "" {
			if dev {
				v = DevKey
			} else {
				p = append(p, fmt.Sprintf("app_groups.%s: no API key (set %s)", g.Name, keySource(g)))
				continue
			}
		}
		if strings.ContainsAny(v, " \t\r\n\"") {
			p = append(p, fmt.Sprintf("app_groups.%s: API key from %s contains whitespace or quotes", g.Name, keySource(g)))
			continue
		}
		keys[g.Name] = Secret(v)
	}
	if len(p) > 0 {
		return nil, &Error{Problems: p}
	}
	return keys, nil
}

func keySource(g Group) string {
	if g.APIKeyFile != "" {
		return "file " + g.APIKeyFile
	}
	return "$" + g.APIKeyEnv
}
