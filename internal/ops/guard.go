package ops

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Body limits: a PUT /loglevel body is a few bytes; nothing else served here
// needs more than a pprof symbol lookup.
const (
	MaxLogLevelBody = 4 << 10
	MaxBody         = 64 << 10
)

// Option configures Handler.
type Option func(*options)

type options struct{ admin Admin }

// Admin decides who may change the process or look inside it (PUT
// /loglevel, pprof): a request carrying "Authorization: Bearer <Token>", or,
// when AllowLoopback, any request from a loopback peer. The peer is the TCP
// peer; forwarding headers are ignored.
type Admin struct {
	Token         string // empty: no token is accepted
	AllowLoopback bool
}

// WithAdmin sets who may use the admin endpoints (default: loopback peers
// only, no token).
func WithAdmin(a Admin) Option { return func(o *options) { o.admin = a } }

// allowed reports whether r may use an admin endpoint.
func (a Admin) allowed(r *http.Request) bool {
	if a.Token != "" {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok &&
			subtle.ConstantTimeCompare([]byte(tok), []byte(a.Token)) == 1 {
			return true
		}
	}
	if a.AllowLoopback {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if ip := net.ParseIP(host); err == nil && ip != nil && ip.IsLoopback() {
			return true
		}
	}
	return false
}

func forbidden(w http.ResponseWriter) {
	http.Error(w, "forbidden: this endpoint needs the admin token (Authorization: Bearer …) or a loopback peer", http.StatusForbidden)
}

// guard serves h to admins only.
func (a Admin) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.allowed(r) {
			forbidden(w)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tooLarge answers 413 and closes the connection, so that the rest of a
// large body is never read.
func tooLarge(w http.ResponseWriter, limit int64) {
	w.Header().Set("Connection", "close")
	http.Error(w, "request body too large: at most "+strconv.FormatInt(limit, 10)+" bytes", http.StatusRequestEntityTooLarge)
}

// CapBodies refuses a declared body over its limit at once, and caps the
// bytes any handler can read from an undeclared (chunked) one: 4 KiB for
// /loglevel, 64 KiB elsewhere. Handler applies it; wrap other handlers
// served on the same listener with it too.
func CapBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(MaxBody)
		if r.URL.Path == LogLevelPath {
			limit = MaxLogLevelBody
		}
		if r.ContentLength > limit {
			tooLarge(w, limit)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

// logLevel serves GET {"level":"info"} to anyone and PUT {"level":"debug"}
// (JSON, or the form field level) to admins. Only debug, info, warn and error
// are accepted: a higher level would silence the error log.
func logLevel(level zap.AtomicLevel, admin Admin) http.Handler {
	type payload struct {
		Level string `json:"level"`
	}
	reply := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	bad := func(w http.ResponseWriter, msg string) {
		reply(w, http.StatusBadRequest, map[string]string{"error": msg})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			reply(w, http.StatusOK, payload{Level: level.Level().String()})
			return
		case http.MethodPut:
		default:
			w.Header().Set("Allow", "GET, PUT")
			reply(w, http.StatusMethodNotAllowed, map[string]string{"error": "only GET and PUT are supported"})
			return
		}
		if !admin.allowed(r) {
			forbidden(w)
			return
		}
		body, err := io.ReadAll(r.Body)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge(w, mbe.Limit)
			return
		}
		if err != nil {
			bad(w, "cannot read the body")
			return
		}
		var want string
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			want = r.PostFormValue("level")
		} else {
			var p payload
			if err := json.Unmarshal(body, &p); err != nil {
				bad(w, `body must be {"level":"debug|info|warn|error"}`)
				return
			}
			want = p.Level
		}
		var l zapcore.Level
		if err := l.UnmarshalText([]byte(want)); err != nil || l < zapcore.DebugLevel || l > zapcore.ErrorLevel {
			bad(w, "level must be debug, info, warn or error")
			return
		}
		level.SetLevel(l)
		reply(w, http.StatusOK, payload{Level: level.Level().String()})
	})
}

// Timeouts bound every connection of the ops server: a slow or trickled
// request, a slow reader of the response, an idle keep-alive.
type Timeouts struct {
	ReadHeader, Read, Write, Idle time.Duration
}

// DefaultTimeouts suit Prometheus scrapes and probes. Write leaves room for a
// 30 s pprof profile.
func DefaultTimeouts() Timeouts {
	return Timeouts{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 40 * time.Second, Idle: 10 * time.Second}
}

// NewServer returns the ops HTTP server for h with the given timeouts (zero
// fields take DefaultTimeouts).
func NewServer(h http.Handler, t Timeouts) *http.Server {
	d := DefaultTimeouts()
	pick := func(v, def time.Duration) time.Duration {
		if v > 0 {
			return v
		}
		return def
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: pick(t.ReadHeader, d.ReadHeader),
		ReadTimeout:       pick(t.Read, d.Read),
		WriteTimeout:      pick(t.Write, d.Write),
		IdleTimeout:       pick(t.Idle, d.Idle),
		MaxHeaderBytes:    16 << 10,
	}
}
