package braze

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"time"
)

// Key is a Braze REST API key. It prints as [redacted] in every fmt verb and
// in JSON so that it cannot leak through a log line, an error or a panic.
type Key string

func (Key) String() string                 { return "[redacted]" }
func (Key) GoString() string               { return "braze.Key([redacted])" }
func (Key) MarshalJSON() ([]byte, error)   { return []byte(`"[redacted]"`), nil }
func (k Key) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

// Version is reported in the User-Agent header; the build sets it.
var Version = "dev"

// MaxResponseBytes bounds how much of a response body is read.
const MaxResponseBytes = 1 << 20

// Path is the endpoint's path below the REST base URL.
const Path = "/sends/id/create"

// CreateSendIDRequest is the body of POST /sends/id/create.
type CreateSendIDRequest struct {
	CampaignID string `json:"campaign_id"`
	SendID     string `json:"send_id,omitempty"`
}

// CreateSendIDResponse is a successful answer.
type CreateSendIDResponse struct {
	StatusCode int
	Message    string // "success", or "queued" during Braze maintenance
	// SendID is what Braze returned; empty if the body carried none.
	SendID    string
	RateLimit RateLimit
}

// Client calls one Braze REST endpoint. It is safe for concurrent use.
type Client struct {
	endpoint  string
	host      string
	hc        *http.Client
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient replaces the default HTTP client. Its CheckRedirect is
// replaced so that the key never follows a redirect to another host.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { cp := *hc; c.hc = &cp }
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// ValidateBaseURL accepts https URLs, and http only for loopback hosts.
func ValidateBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("braze url: %w", err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("braze url %q: no host", raw)
	}
	if u.User != nil {
		return nil, errors.New("braze url: must not carry user info")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			return nil, fmt.Errorf("braze url %q: plain http is allowed only for loopback hosts", raw)
		}
	default:
		return nil, fmt.Errorf("braze url %q: scheme must be https", raw)
	}
	return u, nil
}

// IsLoopback reports whether host names the local machine.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// KnownHost reports whether u is one of Braze's documented REST instances;
// any other host is allowed but worth a warning.
func KnownHost(u *url.URL) bool {
	h := strings.ToLower(u.Hostname())
	return strings.HasPrefix(h, "rest.") && (strings.HasSuffix(h, ".braze.com") || strings.HasSuffix(h, ".braze.eu"))
}

// DefaultHTTPClient has bounded dial, TLS, header and total timeouts and a
// pooled keep-alive transport.
func DefaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			ForceAttemptHTTP2:     true,
		},
	}
}

// New returns a client for the REST endpoint baseURL (e.g.
// https://rest.iad-01.braze.com).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := ValidateBaseURL(baseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{
		endpoint:  strings.TrimRight(u.String(), "/") + Path,
		host:      u.Host,
		hc:        DefaultHTTPClient(),
		userAgent: "sendid/" + Version,
	}
	for _, o := range opts {
		o(c)
	}
	c.hc.CheckRedirect = checkRedirect
	return c, nil
}

// checkRedirect keeps the Authorization header only while the redirect stays
// on the original host and scheme: net/http would forward it to subdomains,
// and to plain http on the same host, where the key travels in clear text.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return http.ErrUseLastResponse
	}
	if req.URL.Host != via[0].URL.Host || !strings.EqualFold(req.URL.Scheme, via[0].URL.Scheme) {
		req.Header.Del("Authorization")
	}
	return nil
}

// CreateSendID registers req with Braze using key. Any failure is an *Error.
func (c *Client) CreateSendID(ctx context.Context, key Key, req CreateSendIDRequest) (CreateSendIDResponse, error) {
	resp, err := c.createSendID(ctx, key, req)
	if e, ok := err.(*Error); ok && len(key) > 0 {
		// A misbehaving server or proxy may echo the Authorization header.
		e.Message = strings.ReplaceAll(e.Message, string(key), "[redacted]")
		for i := range e.Details {
			e.Details[i] = strings.ReplaceAll(e.Details[i], string(key), "[redacted]")
		}
	}
	return resp, err
}

func (c *Client) createSendID(ctx context.Context, key Key, req CreateSendIDRequest) (CreateSendIDResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return CreateSendIDResponse{}, &Error{Class: Rejected, Message: "encode request", Err: err, NotSent: true}
	}
	var wrote bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteHeaders: func() { wrote = true }})
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return CreateSendIDResponse{}, &Error{Class: ConfigFault, Message: "build request", Err: err, NotSent: true}
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", c.userAgent)
	hreq.Header.Set("Authorization", "Bearer "+string(key))

	resp, err := c.hc.Do(hreq)
	if err != nil {
		return CreateSendIDResponse{}, transportError(err, !wrote)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	rl := ParseRateLimit(resp.Header)
	if err != nil {
		return CreateSendIDResponse{}, &Error{Class: Retryable, StatusCode: resp.StatusCode, Message: "read response body", RateLimit: rl, Err: scrub(err)}
	}
	if len(raw) > MaxResponseBytes {
		return CreateSendIDResponse{}, &Error{Class: Retryable, StatusCode: resp.StatusCode, Message: fmt.Sprintf("response body over %d bytes", MaxResponseBytes), RateLimit: rl}
	}
	var parsed struct {
		Message string            `json:"message"`
		SendID  string            `json:"send_id"`
		Errors  []json.RawMessage `json:"errors"`
	}
	jsonErr := json.Unmarshal(raw, &parsed)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if jsonErr == nil && (parsed.Message == "success" || parsed.Message == "queued") {
			return CreateSendIDResponse{StatusCode: resp.StatusCode, Message: parsed.Message, SendID: parsed.SendID, RateLimit: rl}, nil
		}
		return CreateSendIDResponse{}, &Error{Class: Retryable, StatusCode: resp.StatusCode, Message: "unexpected success body: " + snippet(raw, key), RateLimit: rl}
	}
	e := &Error{Class: classify(resp.StatusCode), StatusCode: resp.StatusCode, RateLimit: rl}
	if jsonErr == nil && parsed.Message != "" {
		e.Message = parsed.Message
		for _, d := range parsed.Errors {
			e.Details = append(e.Details, snippet(d, key))
		}
	} else {
		e.Message = http.StatusText(resp.StatusCode)
		if s := snippet(raw, key); s != "" {
			e.Message += ": " + s
		}
	}
	return CreateSendIDResponse{}, e
}

func transportError(err error, notSent bool) *Error {
	msg := "request failed"
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		msg = "request timed out"
	}
	return &Error{Class: Retryable, Message: msg, NotSent: notSent, Err: scrub(err)}
}

// scrub drops *url.Error's wrapper text; the URL holds no key, but keeping
// the chain short keeps logs readable. The cause is preserved for errors.Is.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// snippet renders at most 256 bytes of an untrusted body as a single line.
// The key is redacted before the cut, so that no part of an echoed key
// survives the truncation.
func snippet(b []byte, key Key) string {
	s := strings.TrimSpace(string(b))
	if len(key) > 0 {
		s = strings.ReplaceAll(s, string(key), "[redacted]")
	}
	if len(s) > 256 {
		s = s[:256] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}
