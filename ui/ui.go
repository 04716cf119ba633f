package ui

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/worker"
)

// Path is where the page is mounted on the ops listener.
const Path = "/ui"

// PageSize is how many app groups one page of the overview shows.
const PageSize = 50

// Source is the status every number on the page comes from: the worker's,
// the same one `sendidctl quota --json` reads over the control subject.
type Source interface {
	Groups() []string
	StatusOf(ctx context.Context, groups []string) ([]worker.GroupStatus, error)
	// Orphaned lists groups no longer configured whose admitted jobs wait.
	Orphaned() []queue.Orphan
}

var _ Source = (*worker.Worker)(nil)

// Options configure the page.
type Options struct {
	// Source returns the worker once it runs (nil before: the page says
	// "starting").
	Source func() Source
	Ops    Operations
	Recent *Recent
	// Actions turns on the pause, resume and replay buttons for requests
	// that carry AdminToken (ui.actions). Without a token nobody gets them.
	Actions    bool
	AdminToken config.Secret
	Now        func() time.Time // default time.Now
	Log        *zap.Logger
	// Refresh is the meta-refresh interval of the overview (default 10s).
	Refresh time.Duration
}

//go:embed templates/*.html templates/*.css
var files embed.FS

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"pathEscape": url.PathEscape,
}).ParseFS(files, "templates/*.html"))

// Handler serves the page and its actions under Path.
func Handler(o Options) http.Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Refresh <= 0 {
		o.Refresh = 10 * time.Second
	}
	h := &handler{o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, h.index)
	mux.HandleFunc("GET "+Path+"/{$}", h.index)
	mux.HandleFunc("GET "+Path+"/style.css", h.style)
	mux.HandleFunc("GET "+Path+"/groups/{group}", h.group)
	mux.HandleFunc("POST "+Path+"/login", h.login)
	mux.HandleFunc("POST "+Path+"/logout", h.logout)
	mux.HandleFunc("POST "+Path+"/groups/{group}/pause", h.action(h.pause))
	mux.HandleFunc("POST "+Path+"/groups/{group}/resume", h.action(h.resume))
	mux.HandleFunc("POST "+Path+"/groups/{group}/dead/{seq}/replay", h.action(h.replay))
	mux.HandleFunc("POST "+Path+"/groups/{group}/dead/replay-all", h.action(h.replayAll))
	return mux
}

type handler struct{ o Options }

// maxFormBytes bounds an action's form: a token and a duration.
const maxFormBytes = 4 << 10

// cookieName holds the page session: an HMAC of the admin token, so the
// token itself never sits in the browser.
const cookieName = "sendid_ui"

func (h *handler) session() string {
	m := hmac.New(sha256.New, []byte(h.o.AdminToken.Reveal()))
	m.Write([]byte("sendid-ui-session"))
	return hex.EncodeToString(m.Sum(nil))
}

// equal compares in constant time (over digests, so lengths do not leak).
func equal(a, b string) bool {
	x, y := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(x[:], y[:]) == 1
}

// enabled reports whether actions can be used at all.
func (h *handler) enabled() bool { return h.o.Actions && !h.o.AdminToken.IsZero() }

// authorized reports whether r carries the admin token: header
// X-Sendid-Admin-Token, Authorization: Bearer, or the page's session cookie.
// (A form field is accepted by login only.)
func (h *handler) authorized(r *http.Request) bool {
	if !h.enabled() {
		return false
	}
	tok := h.o.AdminToken.Reveal()
	if v := r.Header.Get("X-Sendid-Admin-Token"); v != "" {
		return equal(v, tok)
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return equal(v, tok)
	}
	if c, err := r.Cookie(cookieName); err == nil {
		return equal(c.Value, h.session())
	}
	return false
}

// sameOrigin refuses cross-site form posts (the cookie is SameSite=Strict
// too).
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || o == "null" {
		return o == ""
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if !h.enabled() || !sameOrigin(r) || r.ParseForm() != nil || !equal(r.PostForm.Get("token"), h.o.AdminToken.Reveal()) {
		h.o.Log.Warn("operator page: login refused", zap.String("remote", r.RemoteAddr))
		h.fail(w, http.StatusForbidden, "actions are off, or the admin token is wrong")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: h.session(), Path: Path, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: 12 * 3600})
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

func (h *handler) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: Path, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, Path, http.StatusSeeOther)
}

// action guards a state-changing endpoint: 403 unless actions are on and the
// request carries the admin token; 404 for a group that is not configured.
func (h *handler) action(fn func(ctx context.Context, r *http.Request, group string) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if !h.authorized(r) || !sameOrigin(r) {
			h.o.Log.Warn("operator page: action refused", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
			h.fail(w, http.StatusForbidden, "actions need ui.actions and the admin token")
			return
		}
		if err := r.ParseForm(); err != nil {
			h.fail(w, http.StatusBadRequest, "unreadable form")
			return
		}
		group := r.PathValue("group")
		if !h.known(group) {
			h.fail(w, http.StatusNotFound, fmt.Sprintf("no app group %q", group))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		done, err := fn(ctx, r, group)
		if err != nil {
			h.o.Log.Warn("operator page: action failed", zap.String("path", r.URL.Path), zap.Error(err))
			status := http.StatusBadGateway
			var bad badRequest
			if errors.As(err, &bad) {
				status = http.StatusBadRequest
			} else if errors.Is(err, errNoDeadLetter) {
				status = http.StatusNotFound
			}
			h.fail(w, status, err.Error())
			return
		}
		h.o.Log.Info("operator page: action", zap.String("app_group", group), zap.String("done", done))
		back := r.PostForm.Get("back")
		if back != Path {
			back = Path + "/groups/" + url.PathEscape(group)
		}
		http.Redirect(w, r, back, http.StatusSeeOther)
	}
}

// badRequest is an action input the operator must fix.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

func (h *handler) pause(ctx context.Context, r *http.Request, group string) (string, error) {
	now := h.o.Now()
	var until time.Time
	if f := strings.TrimSpace(r.PostForm.Get("for")); f != "" {
		d, err := time.ParseDuration(f)
		if err != nil || d <= 0 {
			return "", badRequest{fmt.Sprintf("pause for %q: want a positive duration like 1h", f)}
		}
		until = now.Add(d)
	} else {
		// Until the group's next reset: the page's default.
		st, err := h.statusOf(ctx, []string{group})
		if err != nil {
			return "", err
		}
		if len(st) == 0 {
			return "", fmt.Errorf("no status for app group %q", group)
		}
		until = st[0].NextReset
	}
	if err := h.o.Ops.Pause(ctx, group, until); err != nil {
		return "", err
	}
	return "paused until " + until.UTC().Format(time.RFC3339), nil
}

func (h *handler) resume(ctx context.Context, _ *http.Request, group string) (string, error) {
	return "resumed", h.o.Ops.Resume(ctx, group)
}

func (h *handler) replay(ctx context.Context, r *http.Request, group string) (string, error) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		return "", badRequest{"dead letter sequence must be a number"}
	}
	return "replayed dead letter " + strconv.FormatUint(seq, 10), h.o.Ops.Replay(ctx, group, seq)
}

func (h *handler) replayAll(ctx context.Context, _ *http.Request, group string) (string, error) {
	n, err := h.o.Ops.ReplayAll(ctx, group)
	return fmt.Sprintf("replayed %d dead letter(s)", n), err
}

func (h *handler) source() Source {
	if h.o.Source == nil {
		return nil
	}
	return h.o.Source()
}

func (h *handler) known(group string) bool {
	src := h.source()
	if src == nil {
		return false
	}
	for _, g := range src.Groups() {
		if g == group {
			return true
		}
	}
	return false
}

func (h *handler) statusOf(ctx context.Context, groups []string) ([]worker.GroupStatus, error) {
	src := h.source()
	if src == nil {
		return nil, errors.New("the worker is starting")
	}
	return src.StatusOf(ctx, groups)
}

// row is one group as the page shows it.
type row struct {
	worker.GroupStatus
	Percent    int    // used / cap, 0-100
	ResetLocal string // next reset in the group's timezone
	ResetIn    string // countdown
	DrainIn    string
	State      string // running, paused, config fault, blocked
	StateClass string
	Detail     string
}

func (h *handler) rows(st []worker.GroupStatus) []row {
	now := h.o.Now()
	out := make([]row, 0, len(st))
	for _, s := range st {
		r := row{GroupStatus: s, State: "running", StateClass: "ok"}
		if s.Cap > 0 {
			r.Percent = min(100, s.Used*100/s.Cap)
		}
		loc, err := time.LoadLocation(s.Timezone)
		if err != nil {
			loc = time.UTC
		}
		r.ResetLocal = s.NextReset.In(loc).Format("2006-01-02 15:04 MST")
		r.ResetIn = countdown(s.NextReset.Sub(now))
		if !s.DrainETA.IsZero() {
			r.DrainIn = countdown(s.DrainETA.Sub(now))
		}
		switch {
		case s.PauseReason == "config_fault":
			r.State, r.StateClass, r.Detail = "config fault", "bad", s.LastFault
		case s.Paused:
			r.State, r.StateClass = "paused", "warn"
			r.Detail = s.PauseReason
			if !s.PausedUntil.IsZero() {
				r.Detail += " until " + s.PausedUntil.In(loc).Format("2006-01-02 15:04 MST")
			}
		case s.Remaining == 0:
			r.State, r.StateClass, r.Detail = "exhausted", "warn", "until the next reset"
		case s.BlockedUntil.After(now):
			r.State, r.StateClass, r.Detail = "blocked by Braze", "warn", "until "+s.BlockedUntil.In(loc).Format("15:04 MST")
		}
		out = append(out, r)
	}
	return out
}

// countdown prints d as "in 3h12m", "in 45s" or "now".
func countdown(d time.Duration) string {
	if d <= 0 {
		return "now"
	}
	if d >= time.Hour {
		d = d.Round(time.Minute)
	} else {
		d = d.Round(time.Second)
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return "in " + s
}

type page struct {
	Title       string
	Refresh     int
	Actions     bool // buttons shown
	CanLogin    bool // actions on, not yet authenticated
	Error       string
	Rows        []row
	Query       string
	PageNum     int
	Pages       int
	Total       int
	Shown       int
	PrevURL     string
	NextURL     string
	Group       string
	Recent      []queue.Result
	Orphans     []queue.Orphan
	Dead        []queue.DeadLetter
	DeadErr     string
	GeneratedAt string
	Back        string // where an action returns: the overview or the group's page
}

func (h *handler) base(r *http.Request, title string) page {
	auth := h.authorized(r)
	return page{Title: title, Refresh: int(h.o.Refresh.Seconds()), Actions: auth, CanLogin: h.enabled() && !auth,
		GeneratedAt: h.o.Now().UTC().Format(time.RFC3339)}
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	p := h.base(r, "sendid")
	src := h.source()
	if src == nil {
		p.Error = "the worker is starting"
		h.render(w, http.StatusServiceUnavailable, "index.html", p)
		return
	}
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > 64 {
		q = q[:64]
	}
	var groups []string
	for _, g := range src.Groups() {
		if q == "" || strings.Contains(g, strings.ToLower(q)) {
			groups = append(groups, g)
		}
	}
	sort.Strings(groups)
	p.Query, p.Total, p.Back = q, len(groups), Path
	p.Pages = max(1, (len(groups)+PageSize-1)/PageSize)
	p.PageNum, _ = strconv.Atoi(r.URL.Query().Get("page"))
	p.PageNum = min(max(p.PageNum, 1), p.Pages)
	lo, hi := (p.PageNum-1)*PageSize, min(p.PageNum*PageSize, len(groups))
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	st, err := src.StatusOf(ctx, groups[lo:hi])
	if err != nil {
		h.o.Log.Warn("operator page: status", zap.Error(err))
		p.Error = "status unavailable: " + err.Error()
		h.render(w, http.StatusBadGateway, "index.html", p)
		return
	}
	p.Rows, p.Shown = h.rows(st), len(st)
	p.Orphans = src.Orphaned()
	link := func(n int) string {
		v := url.Values{}
		if q != "" {
			v.Set("q", q)
		}
		v.Set("page", strconv.Itoa(n))
		return Path + "?" + v.Encode()
	}
	if p.PageNum > 1 {
		p.PrevURL = link(p.PageNum - 1)
	}
	if p.PageNum < p.Pages {
		p.NextURL = link(p.PageNum + 1)
	}
	h.render(w, http.StatusOK, "index.html", p)
}

func (h *handler) group(w http.ResponseWriter, r *http.Request) {
	group := r.PathValue("group")
	p := h.base(r, "sendid · "+group)
	p.Group, p.Back = group, Path+"/groups/"+url.PathEscape(group)
	if !h.known(group) {
		p.Error = fmt.Sprintf("no app group %q", group)
		h.render(w, http.StatusNotFound, "group.html", p)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	st, err := h.statusOf(ctx, []string{group})
	if err != nil {
		h.o.Log.Warn("operator page: status", zap.Error(err))
		p.Error = "status unavailable: " + err.Error()
		h.render(w, http.StatusBadGateway, "group.html", p)
		return
	}
	p.Rows = h.rows(st)
	if h.o.Recent != nil {
		p.Recent = h.o.Recent.Last(group)
	}
	if h.o.Ops != nil {
		if p.Dead, err = h.o.Ops.DeadLetters(ctx, group); err != nil {
			p.DeadErr = err.Error()
		}
	}
	h.render(w, http.StatusOK, "group.html", p)
}

func (h *handler) style(w http.ResponseWriter, _ *http.Request) {
	data, _ := files.ReadFile("templates/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(data)
}

func (h *handler) fail(w http.ResponseWriter, status int, msg string) {
	p := page{Title: "sendid · " + http.StatusText(status), Error: msg}
	h.render(w, status, "error.html", p)
}

func (h *handler) render(w http.ResponseWriter, status int, name string, p page) {
	var b strings.Builder
	if err := tmpl.ExecuteTemplate(&b, name, p); err != nil {
		h.o.Log.Error("operator page: template", zap.String("template", name), zap.Error(err))
		http.Error(w, "page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin") // "no-referrer" makes browsers send Origin: null on form posts
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}
