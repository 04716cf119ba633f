package config

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// KeyDoc documents one YAML key in the configuration reference.
type KeyDoc struct {
	Doc     string // what the key means (required)
	Default string // shown instead of the value Default() holds: computed or per-group defaults
	Env     string // the variable that overrides the key, if any
	Type    string // shown instead of the type derived from the Go type
}

// KeyDocs documents every key of Config by its YAML path: "nats.url";
// "<name>" stands for a map key ("app_groups.<name>.daily_cap") and "[]"
// for a list element. A key of Config missing here, or an entry here
// naming no key, fails TestConfigurationReference, which renders
// docs/configuration.md from Config, Default() and this table
// (go test ./config -run TestConfigurationReference -update rewrites it).
// Add new keys at the end of the block of their section.
var KeyDocs = map[string]KeyDoc{
	"nats":                {Doc: "The connection to the NATS servers."},
	"nats.url":            {Env: "SENDID_NATS_URL", Doc: "NATS servers, comma-separated."},
	"nats.name":           {Default: "`sendid-worker@<hostname>`", Doc: "Connection name the server shows."},
	"nats.creds_file":     {Doc: "NATS credentials file (JWT and seed). `-check-config` checks it can be read."},
	"nats.nkey_file":      {Doc: "File holding an nkey seed; an alternative to `creds_file`."},
	"nats.tls":            {Doc: "TLS towards NATS: on when any of its files is set."},
	"nats.tls.ca_file":    {Doc: "PEM CA certificates to verify the server with (default: the system's)."},
	"nats.tls.cert_file":  {Doc: "PEM client certificate (goes with `key_file`)."},
	"nats.tls.key_file":   {Doc: "PEM client key (goes with `cert_file`)."},
	"nats.reconnect_wait": {Doc: "Wait between reconnect attempts, jittered."},

	"braze":               {Doc: "How Braze is called."},
	"braze.url":           {Env: "SENDID_BRAZE_URL", Default: "— (required unless `-dev`)", Doc: "Braze REST endpoint, e.g. `https://rest.iad-01.braze.com`; plain `http://` only for loopback hosts."},
	"braze.timeout":       {Env: "SENDID_BRAZE_TIMEOUT", Doc: "Time limit of one Braze call; must be shorter than `shutdown_timeout` (a call cut by the shutdown bound is in doubt)."},
	"braze.max_attempts":  {Env: "SENDID_MAX_ATTEMPTS", Doc: "Retryable failures (5xx, timeouts, connection errors) a job may have before it ends `retries_exhausted`; 401/403/404 and 429 answers do not count."},
	"braze.retry_backoff": {Doc: "First retry delay; doubled per attempt, jittered."},
	"braze.retry_max":     {Doc: "Longest retry delay."},

	"quota":                {Doc: "Quota settings shared by every app group."},
	"quota.period":         {Env: "SENDID_QUOTA_PERIOD", Doc: "Quota period length (≥ 1s). A day's period starts at the first instant of the local day in the group's `timezone` (midnight, or the first instant after a DST gap at midnight); shorter periods start at multiples of the period since the Unix epoch. A change takes effect at the next period boundary."},
	"quota.probe_interval": {Doc: "When the rest of a period is blocked only by calls that may not have been charged (5xx, timeouts), one probe call per interval settles the count (≥ 1s)."},

	"subject_prefix": {Env: "SENDID_SUBJECT_PREFIX", Doc: "Root of every subject: `<prefix>.jobs.<group>`, `<prefix>.results.<group>`, …"},
	"http_addr":      {Env: "SENDID_HTTP_ADDR", Default: "`:8080` (`127.0.0.1:8080` in `-dev`)", Doc: "Listen address of `/metrics`, `/healthz`, `/readyz` and `/loglevel`."},

	"log":        {Doc: "Logging."},
	"log.level":  {Env: "SENDID_LOG_LEVEL", Doc: "`debug`, `info`, `warn` or `error`; `PUT /loglevel` changes it at run time."},
	"log.format": {Env: "SENDID_LOG_FORMAT", Default: "`json` (`console` in `-dev`)", Doc: "`json` or `console`."},

	"max_job_bytes":    {Env: "SENDID_MAX_JOB_BYTES", Doc: "Largest job body (256 … 8388608); a larger one ends `invalid_job` without being parsed."},
	"shutdown_timeout": {Env: "SENDID_SHUTDOWN_TIMEOUT", Doc: "How long the job in flight may take after SIGTERM before it is put back."},

	"streams":                  {Doc: "The JetStream streams and KV buckets."},
	"streams.replicas":         {Doc: "Replicas of every stream and bucket (1 … 5; 3 on a JetStream cluster)."},
	"streams.duplicate_window": {Doc: "Window in which the stream drops a job published twice with the same `Nats-Msg-Id`; at least the consumers' AckWait (`lane_failover`). One window for every group: a publisher's `Nats-Msg-Id` must be unique across app groups (prefer the `id` field, which is scoped by group)."},
	"streams.results":          {Doc: "Keep the `SENDID_RESULTS` stream on `<prefix>.results.>` for publishers that were not listening."},
	"streams.results_max_age":  {Doc: "How long `SENDID_RESULTS` keeps a result."},
	"streams.job_record_ttl":   {Doc: "How long a finished job id answers a duplicate from its record."},
	"streams.pair_ttl":         {Doc: "How long a created `(campaign_id, send_id)` pair is never sent again."},
	"streams.recheck_interval": {Doc: "Safety-net look at idle lanes."},

	"streams.max_bytes":         {Doc: "Bytes stream `SENDID` may hold (jobs, admitted FIFOs, dead letters of every group; ≥ 1048576, or -1 for unlimited). Full: new publishes are refused (discard new) and stored jobs that cannot be admitted are answered `backlog_full`. Reserved from the account's and server's JetStream storage at start: it must fit there."},
	"streams.results_max_bytes": {Doc: "Bytes `SENDID_RESULTS` may hold (≥ 1048576, or -1 for unlimited); the oldest results go first."},

	"reply_subjects": {Doc: "Allow-list of NATS subject patterns results may go to (wildcards allowed), on top of the built-in rules; empty: any subject those rules accept."},

	"app_groups":                     {Default: "`default` only", Doc: "The Braze workspaces by name (1–64 characters of `a-z0-9_-`). The `SENDID_*` variables configure the group `default`."},
	"app_groups.<name>.braze_url":    {Default: "`braze.url`", Doc: "The group's Braze REST endpoint (workspaces live on different instances)."},
	"app_groups.<name>.api_key_env":  {Env: "SENDID_BRAZE_API_KEY (group `default`)", Default: "`SENDID_BRAZE_API_KEY` for `default`", Doc: "Environment variable holding the group's API key."},
	"app_groups.<name>.api_key_file": {Env: "SENDID_BRAZE_API_KEY_FILE (group `default`)", Doc: "File holding the group's API key, re-read when it changes and on SIGHUP; an alternative to `api_key_env`."},
	"app_groups.<name>.daily_cap":    {Env: "SENDID_DAILY_CAP (group `default`)", Default: "`100`", Doc: "Send IDs per quota period; the lower of this and Braze's `X-RateLimit-Limit` rules."},
	"app_groups.<name>.burst":        {Env: "SENDID_BURST (group `default`)", Default: "`10`", Doc: "Pacer burst: calls allowed back to back before pacing at cap / period."},
	"app_groups.<name>.timezone":     {Env: "SENDID_TIMEZONE (group `default`)", Default: "`UTC`", Doc: "IANA time zone in which the group's periods start at midnight."},
	"app_groups.<name>.in_doubt":     {Env: "SENDID_IN_DOUBT (group `default`)", Default: "`retry`", Doc: "A job whose earlier call may have reached Braze without its answer recorded (a worker killed during the call): `retry` calls again, `fail` makes no call and ends it `failed` / `outcome_unknown`. Its result says `in_doubt: true` either way."},

	"app_groups.<name>.reply_subjects": {Default: "`reply_subjects`", Doc: "The group's own allow-list of reply subject patterns; when set it applies instead of the top-level `reply_subjects`."},
	"app_groups.<name>.max_backlog":    {Default: "`0` (unlimited)", Doc: "Admitted jobs that may wait in the group's FIFO; beyond it admission answers `failed` / `backlog_full`."},

	"http_admin":                {Doc: "Who may `PUT /loglevel` and read `/debug/pprof/`: the admin token (`admin_token_file`, sent as `Authorization: Bearer …`), or a loopback peer when allowed; everyone else gets 403."},
	"http_admin.allow_loopback": {Doc: "Admit requests from 127.0.0.1 / ::1 without the token."},

	"app_groups.<name>.gateway_tokens_file": {Doc: "File of gateway tokens (one per line; blank lines and `#` comments skipped) that authenticate HTTP callers as this group besides its API key; re-read when it changes and on SIGHUP."},
	"app_groups.<name>.gateway_tokens_env":  {Doc: "Environment variable holding gateway tokens (separated by commas or white space); an alternative to `gateway_tokens_file`."},

	"dev":          {Doc: "`-dev` mode."},
	"dev.data_dir": {Doc: "Data folder of `-dev`'s embedded NATS server (flag `-dev-dir`)."},

	"dev.gateway_tls_addr": {Doc: "Where `-dev` serves the gateway over HTTPS, with a self-signed certificate generated into the data folder."},

	"gateway":                     {Doc: "The Braze-compatible HTTP front door: Braze's `POST /sends/id/create`, unchanged, becomes a job (README: \"Already calling Braze directly?\")."},
	"gateway.addr":                {Env: "SENDID_GATEWAY_ADDR", Default: "— (off; `127.0.0.1:8081` in `-dev`)", Doc: "Listen address of the gateway."},
	"gateway.tls":                 {Doc: "TLS of the gateway listener: on when both files are set."},
	"gateway.tls.cert_file":       {Doc: "PEM server certificate (goes with `key_file`)."},
	"gateway.tls.key_file":        {Doc: "PEM server key (goes with `cert_file`)."},
	"gateway.wait":                {Doc: "How long a request waits for its job's result before the answer is `202 queued`; a request may ask for `0s` … `60s` with `X-Sendid-Wait`."},
	"gateway.max_waiting":         {Doc: "Requests waiting at once; beyond it `503` with `Retry-After`."},
	"gateway.read_header_timeout": {Doc: "Time limit for a request's headers."},
	"gateway.read_timeout":        {Doc: "Time limit for a whole request, body included."},
	"gateway.write_timeout":       {Doc: "Time limit for an answer; must exceed `wait` (`X-Sendid-Wait` is capped 1s below it)."},
	"gateway.idle_timeout":        {Doc: "How long an idle keep-alive connection stays open."},

	"ui":               {Doc: "The operator page at `/ui` on the `http_addr` listener."},
	"ui.enabled":       {Doc: "Serve the operator page."},
	"ui.actions":       {Doc: "Show pause, resume and replay buttons to requests that carry the admin token."},
	"admin_token_file": {Env: "SENDID_ADMIN_TOKEN_FILE (or the token itself in SENDID_ADMIN_TOKEN)", Doc: "File holding the operators' admin token (at least 16 characters), which `PUT /loglevel`, pprof (see `http_admin`) and the operator page's actions require."},

	"lane_failover": {Env: "SENDID_LANE_FAILOVER", Doc: "1s … 5m. One replica at a time owns an app group's lane (and admission); another takes over when the owner has not pulled for this long, and the job in flight of an owner that died is redelivered after it. An owner stopping on SIGTERM hands over at once."},
}

// Reference renders docs/configuration.md: every key of Config with its
// type, default, variable and meaning. It fails, naming them, when a key
// has no entry in KeyDocs or an entry names no key.
func Reference() (string, error) {
	rows, err := referenceRows(reflect.TypeFor[Config](), reflect.ValueOf(Default()).Elem(), KeyDocs)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(referenceHeader)
	b.WriteString("| key | type | default | env | meaning |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.key, r.typ, cell(r.def), cell(r.env), cell(r.doc))
	}
	b.WriteString(referenceFooter)
	return b.String(), nil
}

const referenceHeader = `# Configuration reference

<!-- Generated from the Config struct (config/config.go) and config/reference.go by
     go test ./config -run TestConfigurationReference -update
     Do not edit by hand: the test fails when this file is stale or a key is undocumented. -->

One YAML file (` + "`-config FILE` or `$SENDID_CONFIG`" + `) holds everything; the environment
overrides it and flags override both: defaults < file < environment < flags. Parsing is strict:
an unknown key, a key given twice or a value of the wrong kind is an error naming the key and
line, and ` + "`sendid-worker -check-config`" + ` reports every problem at once (exit 2). Secrets (API
keys, NATS credentials) come only from files or environment variables, never from the YAML file
or flags. ` + "`<name>`" + ` stands for an app group's name. Durations are Go duration text (` + "`500ms`, `2s`, `24h`" + `).

`

const referenceFooter = `
Flags of ` + "`sendid-worker`" + ` (` + "`sendid-worker -h`" + `): ` + "`-config`, `-dev`, `-dev-dir`, `-check-config`, `-version`,\n`-nats-url`, `-braze-url`, `-http-addr`, `-log-level`, `-log-format`, `-pprof`" + `.
`

func cell(s string) string {
	if s == "" {
		return ""
	}
	return strings.ReplaceAll(s, "|", `\|`)
}

type refRow struct{ key, typ, def, env, doc string }

func referenceRows(t reflect.Type, v reflect.Value, docs map[string]KeyDoc) ([]refRow, error) {
	var rows []refRow
	var missing []string
	used := map[string]bool{}
	var walk func(t reflect.Type, v reflect.Value, prefix string)
	walk = func(t reflect.Type, v reflect.Value, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			key := join(prefix, name)
			var fv reflect.Value
			if v.IsValid() {
				fv = v.Field(i)
			}
			d, ok := docs[key]
			used[key] = true
			if !ok || strings.TrimSpace(d.Doc) == "" {
				missing = append(missing, key)
			}
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
				if fv.IsValid() && !fv.IsNil() {
					fv = fv.Elem()
				} else {
					fv = reflect.Value{}
				}
			}
			r := refRow{key: key, typ: d.Type, def: d.Default, doc: d.Doc}
			if d.Env != "" {
				r.env = "`" + d.Env + "`"
				if k := strings.Index(d.Env, " "); k > 0 {
					r.env = "`" + d.Env[:k] + "`" + d.Env[k:]
				}
			}
			if r.typ == "" {
				r.typ = typeName(ft)
			}
			if r.def == "" {
				r.def = defaultText(ft, fv)
			}
			rows = append(rows, r)
			switch {
			case ft.Kind() == reflect.Struct && ft != durationType:
				walk(ft, fv, key)
			case ft.Kind() == reflect.Map && elemStruct(ft.Elem()) != nil:
				walk(elemStruct(ft.Elem()), reflect.Value{}, key+".<name>")
			case ft.Kind() == reflect.Slice && elemStruct(ft.Elem()) != nil:
				walk(elemStruct(ft.Elem()), reflect.Value{}, key+".[]")
			}
		}
	}
	walk(t, v, "")
	var stale []string
	for k := range docs {
		if !used[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(stale)
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("config keys without documentation in config.KeyDocs: %s", strings.Join(missing, ", ")))
	}
	if len(stale) > 0 {
		errs = append(errs, fmt.Errorf("config.KeyDocs documents keys Config does not have: %s", strings.Join(stale, ", ")))
	}
	return rows, errors.Join(errs...)
}

// elemStruct is t (through pointers) when it is a struct other than a
// duration, else nil.
func elemStruct(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Struct && t != durationType {
		return t
	}
	return nil
}

func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Struct:
		return "section"
	case reflect.Map:
		if elemStruct(t.Elem()) != nil {
			return "mapping of names to sections"
		}
		return "mapping of names to " + typeName(t.Elem()) + "s"
	case reflect.Slice, reflect.Array:
		if elemStruct(t.Elem()) != nil {
			return "list of sections"
		}
		return "list of " + typeName(t.Elem()) + "s"
	}
	return t.String()
}

func defaultText(t reflect.Type, v reflect.Value) string {
	if !v.IsValid() {
		return "—"
	}
	if t == durationType {
		return "`" + durationText(time.Duration(v.Int())) + "`"
	}
	switch t.Kind() {
	case reflect.Struct:
		return ""
	case reflect.String:
		if v.String() == "" {
			return "—"
		}
		return "`" + v.String() + "`"
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			if t.Kind() == reflect.Slice {
				return "`[]`"
			}
			return "—"
		}
	}
	return fmt.Sprintf("`%v`", v.Interface())
}

// durationText writes 24h rather than 24h0m0s.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
