package config

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"
)

// Gateway configures the Braze-compatible HTTP front door (package gateway).
type Gateway struct {
	Addr string     `yaml:"addr"` // "" (off; env SENDID_GATEWAY_ADDR; -dev: 127.0.0.1:8081)
	TLS  GatewayTLS `yaml:"tls"`  // off: plain HTTP
	// Wait is how long a request waits for its job's result before it is
	// answered 202 queued; a request may ask for 0s..60s with X-Sendid-Wait.
	Wait              time.Duration `yaml:"wait"`                // 10s
	MaxWaiting        int           `yaml:"max_waiting"`         // 1000 concurrent requests; beyond: 503
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"` // 5s
	ReadTimeout       time.Duration `yaml:"read_timeout"`        // 10s
	WriteTimeout      time.Duration `yaml:"write_timeout"`       // 75s (longer than the longest wait)
	IdleTimeout       time.Duration `yaml:"idle_timeout"`        // 60s
}

// GatewayTLS is the gateway listener's certificate. Both files or neither.
type GatewayTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// MaxGatewayWait is the longest wait a request may ask for.
const MaxGatewayWait = 60 * time.Second

// Dev defaults of the gateway's listeners.
const (
	DevGatewayAddr    = "127.0.0.1:8081"
	DevGatewayTLSAddr = "127.0.0.1:8443"
)

func defaultGateway() Gateway {
	return Gateway{Wait: 10 * time.Second, MaxWaiting: 1000, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 75 * time.Second, IdleTimeout: 60 * time.Second}
}

// validateGateway adds the gateway's problems.
func (c *Config) validateGateway(add func(string, ...any)) {
	g := c.Gateway
	if g.Addr != "" {
		if _, _, err := net.SplitHostPort(g.Addr); err != nil {
			add("gateway.addr (SENDID_GATEWAY_ADDR): %q is not host:port", g.Addr)
		}
	}
	if c.Dev.GatewayTLSAddr != "" {
		if _, _, err := net.SplitHostPort(c.Dev.GatewayTLSAddr); err != nil {
			add("dev.gateway_tls_addr: %q is not host:port", c.Dev.GatewayTLSAddr)
		}
	}
	if (g.TLS.CertFile == "") != (g.TLS.KeyFile == "") {
		add("gateway.tls: cert_file and key_file go together")
	}
	if g.Wait < 0 || g.Wait > MaxGatewayWait {
		add("gateway.wait: %s is outside 0s..%s", g.Wait, MaxGatewayWait)
	}
	if g.MaxWaiting < 1 || g.MaxWaiting > 1_000_000 {
		add("gateway.max_waiting: %d is outside 1..1000000", g.MaxWaiting)
	}
	if g.ReadHeaderTimeout <= 0 || g.ReadTimeout <= 0 || g.WriteTimeout <= 0 || g.IdleTimeout <= 0 {
		add("gateway: read_header_timeout, read_timeout, write_timeout and idle_timeout must be > 0")
	} else if g.WriteTimeout <= g.Wait {
		add("gateway.write_timeout: %s must be longer than gateway.wait (%s); X-Sendid-Wait is capped 1s below it", g.WriteTimeout, g.Wait)
	}
	for _, n := range sortedGroupNames(c) {
		if g := c.AppGroups[n]; g.GatewayTokensEnv != "" && g.GatewayTokensFile != "" {
			add("app_groups.%s: gateway_tokens_env and gateway_tokens_file are alternatives; set one", n)
		}
	}
	// The gateway's reply subjects are inboxes (_INBOX.<id>.<job>).
	if len(c.ReplySubjects) > 0 && g.Addr != "" {
		ok := false
		for _, p := range c.ReplySubjects {
			if subjectMatches(p, "_INBOX.gateway.job") {
				ok = true
			}
		}
		if !ok {
			add("reply_subjects: the gateway needs _INBOX.> allowed (its answers come back on inboxes)")
		}
	}
}

// subjectMatches is NATS pattern matching ('*' one token, '>' the rest).
func subjectMatches(pattern, subject string) bool {
	pt, st := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range pt {
		if p == ">" {
			return len(st) > i
		}
		if i >= len(st) || (p != "*" && p != st[i]) {
			return false
		}
	}
	return len(pt) == len(st)
}

// LoadGatewayTokens reads every group's gateway tokens (besides its Braze
// API key, which also authenticates at the gateway): from the file named by
// gateway_tokens_file (one token per line; blank lines and lines starting
// with # are skipped) or the variable named by gateway_tokens_env (tokens
// separated by commas or white space).
func (c *Config) LoadGatewayTokens(getenv func(string) string) (map[string][]Secret, error) {
	out := map[string][]Secret{}
	var p []string
	for _, name := range sortedGroupNames(c) {
		g := c.AppGroups[name]
		var raw []string
		switch {
		case g.GatewayTokensFile != "":
			b, err := os.ReadFile(g.GatewayTokensFile)
			if err != nil {
				p = append(p, fmt.Sprintf("app_groups.%s.gateway_tokens_file: %v", name, err))
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					raw = append(raw, line)
				}
			}
		case g.GatewayTokensEnv != "":
			raw = strings.FieldsFunc(getenv(g.GatewayTokensEnv), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
		}
		for i, t := range raw {
			if strings.ContainsAny(t, " \t\"") {
				p = append(p, fmt.Sprintf("app_groups.%s: gateway token %d contains white space or quotes", name, i+1))
				continue
			}
			out[name] = append(out[name], Secret(t))
		}
	}
	if len(p) > 0 {
		return nil, &Error{Problems: p}
	}
	return out, nil
}

func sortedGroupNames(c *Config) []string {
	names := make([]string, 0, len(c.AppGroups))
	for n := range c.AppGroups {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DevKey is the API key LoadKeys substitutes in -dev when none is set.
const DevKey = "dev-key"
