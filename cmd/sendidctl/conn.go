package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/queue"
)

const defaultServer = "nats://127.0.0.1:4222"

// conn holds the connection flags shared by every command and, after
// resolve, the settings they select.
type conn struct {
	server, creds, nkey, tlsCert, tlsKey, tlsCA, prefix string
	contextName, configPath                             string
	timeout                                             time.Duration
	json                                                bool

	// From a nats context only (natscli keeps them there; sendidctl has no
	// flags for secrets).
	user, password, token string
	// source says where the server URL came from, for error messages.
	source string
}

// addConnFlags defines the connection flags on fs.
func addConnFlags(fs *flag.FlagSet) *conn {
	c := &conn{}
	fs.StringVar(&c.server, "server", "", "NATS servers, comma-separated (default: $SENDID_NATS_URL, else the selected nats context, else "+defaultServer+")")
	fs.StringVar(&c.server, "s", "", "short for --server")
	fs.StringVar(&c.contextName, "context", "", "nats CLI context to connect with (a name in ~/.config/nats/context, or a file path)")
	fs.StringVar(&c.configPath, "config", "", "the worker's YAML file: connect as its nats section says, with its subject_prefix")
	fs.StringVar(&c.creds, "creds", "", "NATS credentials file")
	fs.StringVar(&c.nkey, "nkey", "", "NATS nkey seed file")
	fs.StringVar(&c.tlsCert, "tlscert", "", "TLS client certificate")
	fs.StringVar(&c.tlsKey, "tlskey", "", "TLS client key")
	fs.StringVar(&c.tlsCA, "tlsca", "", "TLS CA certificate")
	fs.StringVar(&c.prefix, "prefix", "", "sendid subject prefix (default: $SENDID_SUBJECT_PREFIX, else sendid)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for NATS (and, with --wait, for the result)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	return c
}

// resolve settles the connection: --config or --context (or, without
// either, $SENDID_NATS_URL, else the selected nats context, else the
// default), then each connection flag given overrides its part.
func (c *conn) resolve(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	if c.contextName != "" && c.configPath != "" {
		return fmt.Errorf("%w: --context and --config are alternatives; give one", errUsage)
	}
	if c.timeout <= 0 {
		return fmt.Errorf("%w: --timeout must be positive", errUsage)
	}
	var base conn
	switch {
	case c.configPath != "":
		cfg, err := config.Load(c.configPath, getenv)
		if err != nil {
			return fmt.Errorf("--config %s: %w", c.configPath, err)
		}
		base = conn{server: cfg.NATS.URL, creds: cfg.NATS.CredsFile, nkey: cfg.NATS.NKeyFile, tlsCA: cfg.NATS.TLS.CAFile,
			tlsCert: cfg.NATS.TLS.CertFile, tlsKey: cfg.NATS.TLS.KeyFile, prefix: cfg.SubjectPrefix, source: "--config " + c.configPath}
	case c.contextName != "":
		nctx, err := loadNATSContext(c.contextName, getenv)
		if err != nil {
			return err
		}
		base = nctx
	case getenv("SENDID_NATS_URL") != "":
		base = conn{server: getenv("SENDID_NATS_URL"), source: "$SENDID_NATS_URL"}
	default:
		if name := selectedNATSContext(getenv); name != "" {
			nctx, err := loadNATSContext(name, getenv)
			if err != nil {
				return fmt.Errorf("the selected nats context: %w", err)
			}
			base = nctx
		} else {
			base = conn{server: defaultServer, source: "the default"}
		}
	}
	if base.prefix == "" {
		base.prefix = getenv("SENDID_SUBJECT_PREFIX")
	}
	if base.prefix == "" {
		base.prefix = "sendid"
	}
	override := func(dst *string, from string, names ...string) {
		for _, n := range names {
			if v, ok := given[n]; ok {
				*dst = v
				return
			}
		}
		*dst = from
	}
	override(&c.server, base.server, "s", "server")
	if _, ok := given["server"]; ok {
		base.source = "--server"
	} else if _, ok := given["s"]; ok {
		base.source = "-s"
	}
	override(&c.creds, base.creds, "creds")
	override(&c.nkey, base.nkey, "nkey")
	override(&c.tlsCert, base.tlsCert, "tlscert")
	override(&c.tlsKey, base.tlsKey, "tlskey")
	override(&c.tlsCA, base.tlsCA, "tlsca")
	override(&c.prefix, base.prefix, "prefix")
	c.user, c.password, c.token, c.source = base.user, base.password, base.token, base.source
	if strings.TrimSpace(c.server) == "" {
		return fmt.Errorf("%w: no NATS server: %s names none", errUsage, c.source)
	}
	return nil
}

// natsContext is a nats CLI context file as natscli writes it
// (~/.config/nats/context/NAME.json). Only the connection settings are read.
type natsContext struct {
	URL      string `json:"url"`
	Token    string `json:"token"`
	User     string `json:"user"`
	Password string `json:"password"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
	NSC      string `json:"nsc"`
}

// natsConfigDir is where the nats CLI keeps its settings: $XDG_CONFIG_HOME/nats,
// else ~/.config/nats.
func natsConfigDir(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "nats")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "nats")
	}
	return ""
}

// selectedNATSContext is $NATS_CONTEXT, else the context "nats context
// select" recorded in context.txt, else "".
func selectedNATSContext(getenv func(string) string) string {
	if n := getenv("NATS_CONTEXT"); n != "" {
		return n
	}
	dir := natsConfigDir(getenv)
	if dir == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(dir, "context.txt"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func loadNATSContext(name string, getenv func(string) string) (conn, error) {
	path := name
	if !filepath.IsAbs(name) {
		if strings.Contains(name, "..") || strings.ContainsRune(name, filepath.Separator) {
			return conn{}, fmt.Errorf("%w: %q is not a nats context name", errUsage, name)
		}
		dir := natsConfigDir(getenv)
		if dir == "" {
			return conn{}, fmt.Errorf("no nats context %q: neither $XDG_CONFIG_HOME nor $HOME is set", name)
		}
		path = filepath.Join(dir, "context", name+".json")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return conn{}, fmt.Errorf("no nats context %q (there is no %s; \"nats context ls\" lists them)", name, path)
	}
	if err != nil {
		return conn{}, fmt.Errorf("nats context %q: %w", name, err)
	}
	var nc natsContext
	if err := json.Unmarshal(b, &nc); err != nil {
		return conn{}, fmt.Errorf("nats context %q: %s is not a context file: %w", name, path, err)
	}
	if nc.NSC != "" {
		return conn{}, fmt.Errorf("nats context %q looks its credentials up with nsc, which sendidctl does not do; give --creds", name)
	}
	home := getenv("HOME")
	expand := func(p string) string {
		p = os.Expand(p, getenv)
		if home != "" && (p == "~" || strings.HasPrefix(p, "~/")) {
			p = home + p[1:]
		}
		return p
	}
	out := conn{server: nc.URL, creds: expand(nc.Creds), nkey: expand(nc.NKey), tlsCert: expand(nc.Cert), tlsKey: expand(nc.Key),
		tlsCA: expand(nc.CA), user: nc.User, password: nc.Password, token: nc.Token, source: "nats context " + name}
	if out.server == "" {
		out.server = defaultServer // natscli's default too
	}
	return out, nil
}

func (c *conn) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := queue.Connect(queue.ConnOptions{URL: c.server, Name: "sendidctl", CredsFile: c.creds, NKeyFile: c.nkey,
		CAFile: c.tlsCA, CertFile: c.tlsCert, KeyFile: c.tlsKey, User: c.user, Password: c.password, Token: c.token})
	if err != nil {
		switch {
		case errors.Is(err, nats.ErrNoServers):
			return nil, nil, fmt.Errorf("cannot reach a NATS server at %s (from %s); is it running?", redactURL(c.server), c.source)
		case errors.Is(err, nats.ErrAuthorization):
			return nil, nil, fmt.Errorf("the NATS server at %s refused the credentials (from %s)", redactURL(c.server), c.source)
		}
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// redactURL hides user info (nats://user:pass@host) of every URL in a
// comma-separated list.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if at := strings.LastIndex(p, "@"); at >= 0 {
			scheme := ""
			if k := strings.Index(p, "://"); k >= 0 && k < at {
				scheme = p[:k+3]
			}
			p = scheme + "[redacted]" + p[at:]
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}

func (c *conn) subjects() queue.Subjects { return queue.Subjects{Prefix: c.prefix} }

// inWords turns the errors NATS and JetStream answer with into sentences an
// operator can act on; any other error is returned as it is.
func inWords(err error) string {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.err.Error()
	}
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return "JetStream is not enabled for this account on the NATS server; sendid needs it"
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Sprintf("there is no %s stream on this NATS server: no sendid worker has started against it (or the connection points elsewhere)", queue.Stream)
	case errors.Is(err, jetstream.ErrBucketNotFound):
		return "a sendid KV bucket is missing on this NATS server: no sendid worker has started against it (or the connection points elsewhere)"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return "NATS did not answer within --timeout (" + err.Error() + ")"
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return "nothing answered on NATS: is JetStream enabled, and is a sendid worker running?"
	}
	return err.Error()
}
