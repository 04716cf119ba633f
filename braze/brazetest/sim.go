// Package brazetest is an in-process fake of Braze's POST /sends/id/create,
// in the spirit of net/http/httptest: workspaces with keys, caps and quota
// periods, Braze's request checks and error bodies, X-RateLimit-* headers,
// a registry of created pairs, fault injection, and a request log with
// counters that tests assert on. cmd/brazesim serves it over TCP.
package brazetest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sendid/sendid/braze"
)

// RepeatMode says what creating an already created pair does.
type RepeatMode int

const (
	// RepeatSuccess answers success again without charging the quota (default).
	RepeatSuccess RepeatMode = iota
	// RepeatCharge answers success and charges the quota again.
	RepeatCharge
	// RepeatReject answers 400 "Send ID already exists".
	RepeatReject
)

// Workspace is one simulated Braze workspace.
type Workspace struct {
	Key    string
	Cap    int           // send IDs per period; 0 means 100
	Period time.Duration // 0 means 24h; periods start at multiples since the Unix epoch (UTC midnight for 24h)
	Used   int           // already used in the current period at start
}

// Options configures a Sim. The zero value is a lenient simulator: any
// non-empty key is its own workspace with a cap of 100 per UTC day.
type Options struct {
	Workspaces       []Workspace
	DefaultCap       int           // cap for ad-hoc workspaces when Workspaces is empty (0: 100)
	DefaultPeriod    time.Duration // period for ad-hoc workspaces (0: 24h)
	Campaigns        []string      // known campaign ids; empty accepts any
	LowerCaseHeaders bool          // write x-ratelimit-* in lower case
	Repeat           RepeatMode

	// Faults.
	FailFirst       int           // fail the first N calls of every pair ...
	FailFirstStatus int           // ... with this status (0: 503)
	ErrorRate       float64       // fraction of calls answered 500..503 at random
	Latency         time.Duration // added to every call
	HangRate        float64       // fraction of calls that hang until the client gives up
	Seed            uint64        // random seed for ErrorRate/HangRate (0: fixed default)

	Now func() time.Time // clock; nil means time.Now
}

// Request is one entry of the request log.
type Request struct {
	At         time.Time
	Key        string
	CampaignID string
	SendID     string
	Status     int
	WellFormed bool // passed every request check (auth, content type, body)
}

// Stats are counters over the simulator's lifetime.
type Stats struct {
	Calls          int            // every request received
	Created        int            // new pairs created (charged)
	OverCap        int            // requests answered 429
	RepeatedPairs  int            // requests for a pair created earlier
	PairsTwice     int            // distinct pairs requested again after being created
	Faults         int            // injected failures
	CallsPerPeriod map[string]int // "<key>@<period start RFC3339>" → charged calls
	// RequestsPerPeriod counts every authenticated request, whatever its
	// answer ("Braze may count failed calls").
	RequestsPerPeriod map[string]int
}

type workspace struct {
	Workspace
	periodStart time.Time
	used        int
}

// Sim is the simulator. Use NewServer for an httptest server, or Handler
// to serve it yourself.
type Sim struct {
	opts Options

	mu         sync.Mutex
	rng        *rand.Rand
	keys       map[string]*workspace
	campaigns  map[string]bool
	pairs      map[string]int // key\x00campaign\x00send → times requested after creation + 1
	failCounts map[string]int
	log        []Request
	stats      Stats
}

// New builds a Sim.
func New(opts Options) *Sim {
	if opts.FailFirstStatus == 0 {
		opts.FailFirstStatus = http.StatusServiceUnavailable
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	seed := opts.Seed
	if seed == 0 {
		seed = 0x5e4d1d
	}
	s := &Sim{
		opts:       opts,
		rng:        rand.New(rand.NewPCG(seed, seed>>1|1)),
		keys:       map[string]*workspace{},
		campaigns:  map[string]bool{},
		pairs:      map[string]int{},
		failCounts: map[string]int{},
	}
	s.stats.CallsPerPeriod = map[string]int{}
	s.stats.RequestsPerPeriod = map[string]int{}
	for _, w := range opts.Workspaces {
		s.addWorkspace(w)
	}
	for _, c := range opts.Campaigns {
		s.campaigns[c] = true
	}
	return s
}

func (s *Sim) addWorkspace(w Workspace) *workspace {
	if w.Cap <= 0 {
		w.Cap = 100
	}
	if w.Period <= 0 {
		w.Period = 24 * time.Hour
	}
	ws := &workspace{Workspace: w, used: w.Used, periodStart: periodStart(s.opts.Now(), w.Period)}
	s.keys[w.Key] = ws
	return ws
}

// Server is a Sim listening on 127.0.0.1.
type Server struct {
	*Sim
	URL string
	srv *httptest.Server
}

// NewServer starts a Sim on a loopback port. Close it when done.
func NewServer(opts Options) *Server {
	sim := New(opts)
	srv := httptest.NewServer(sim)
	return &Server{Sim: sim, URL: srv.URL, srv: srv}
}

// Close shuts the server down, cutting hanging requests.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

func periodStart(t time.Time, p time.Duration) time.Time {
	sec := int64(p / time.Second)
	if sec <= 0 {
		sec = 1
	}
	u := t.Unix()
	return time.Unix(u-((u%sec)+sec)%sec, 0).UTC()
}

// SetKey replaces (or adds) a workspace's key, keeping its usage: what an
// operator does when rotating a key.
func (s *Sim) SetKey(oldKey, newKey string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ws, ok := s.keys[oldKey]; ok {
		delete(s.keys, oldKey)
		ws.Key = newKey
		s.keys[newKey] = ws
		return
	}
	s.addWorkspace(Workspace{Key: newKey, Cap: s.opts.DefaultCap, Period: s.opts.DefaultPeriod})
}

// SetUsed sets the current period's usage of the workspace with key.
func (s *Sim) SetUsed(key string, used int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ws := s.workspaceLocked(key); ws != nil {
		ws.used = used
	}
}

// Requests returns a copy of the request log.
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.CallsPerPeriod = maps.Clone(s.stats.CallsPerPeriod)
	st.RequestsPerPeriod = maps.Clone(s.stats.RequestsPerPeriod)
	return st
}

func (s *Sim) workspaceLocked(key string) *workspace {
	if ws, ok := s.keys[key]; ok {
		return ws
	}
	if len(s.opts.Workspaces) > 0 || key == "" {
		return nil
	}
	return s.addWorkspace(Workspace{Key: key, Cap: s.opts.DefaultCap, Period: s.opts.DefaultPeriod})
}

type errorBody struct {
	Message string   `json:"message"`
	Errors  []string `json:"errors,omitempty"`
}

// answer is the simulator's reply to one request.
type answer struct {
	status int
	body   any
	hang   bool
	rl     []string // limit, remaining, reset; nil before the key is known
}

type createBody struct {
	CampaignID *string `json:"campaign_id"`
	SendID     *string `json:"send_id"`
}

// StatsPath serves Stats as JSON (not part of Braze's API).
const StatsPath = "/_sim/stats"

// ServeHTTP implements the endpoint, and Stats at StatsPath.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == StatsPath && r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, s.Stats())
		return
	}
	if r.URL.Path != braze.Path {
		writeJSON(w, http.StatusNotFound, errorBody{Message: "Not Found"})
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Message: "Method Not Allowed"})
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Message: "Invalid request body"})
		return
	}
	key, hasKey := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")

	s.mu.Lock()
	now := s.opts.Now()
	rec := Request{At: now, Key: key}
	s.stats.Calls++
	a := s.decideLocked(r, body, key, hasKey, &rec, now)
	rec.Status = a.status
	s.log = append(s.log, rec)
	latency, lower := s.opts.Latency, s.opts.LowerCaseHeaders
	s.mu.Unlock()

	if a.hang {
		<-r.Context().Done()
		return
	}
	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if a.rl != nil {
		names := [3]string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
		for i, n := range names {
			if lower {
				w.Header()[strings.ToLower(n)] = []string{a.rl[i]}
			} else {
				w.Header().Set(n, a.rl[i])
			}
		}
	}
	writeJSON(w, a.status, a.body)
}

func fail(status int, msg string, errs ...string) answer {
	return answer{status: status, body: errorBody{Message: msg, Errors: errs}}
}

// decideLocked runs Braze's checks in order and returns the answer.
func (s *Sim) decideLocked(r *http.Request, body []byte, key string, hasKey bool, rec *Request, now time.Time) (a answer) {
	var ws *workspace
	if hasKey && key != "" && !strings.HasPrefix(key, `"`) {
		ws = s.workspaceLocked(key)
	}
	if ws == nil {
		return fail(http.StatusUnauthorized, "Invalid API key")
	}
	if ps := periodStart(now, ws.Period); !ps.Equal(ws.periodStart) {
		ws.periodStart, ws.used = ps, 0
	}
	s.stats.RequestsPerPeriod[key+"@"+ws.periodStart.Format(time.RFC3339)]++
	defer func() {
		a.rl = []string{strconv.Itoa(ws.Cap), strconv.Itoa(max(ws.Cap-ws.used, 0)), strconv.FormatInt(ws.periodStart.Add(ws.Period).Unix(), 10)}
	}()
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return fail(http.StatusBadRequest, "Content-Type must be application/json")
	}
	var req createBody
	if err := json.Unmarshal(body, &req); err != nil {
		return fail(http.StatusBadRequest, "Invalid JSON body", err.Error())
	}
	if req.CampaignID == nil {
		return fail(http.StatusBadRequest, "campaign_id is required")
	}
	rec.CampaignID = *req.CampaignID
	if err := braze.ValidateCampaignID(*req.CampaignID); err != nil {
		return fail(http.StatusBadRequest, "Invalid Campaign ID", "campaign_id "+err.Error())
	}
	if req.SendID != nil {
		rec.SendID = *req.SendID
		if err := braze.ValidateSendID(*req.SendID); err != nil {
			return fail(http.StatusBadRequest, "Invalid Send ID", "send_id "+err.Error())
		}
	}
	if len(s.campaigns) > 0 && !s.campaigns[*req.CampaignID] {
		return fail(http.StatusBadRequest, "Invalid Campaign ID")
	}
	rec.WellFormed = true

	sendID := rec.SendID
	pair := key + "\x00" + rec.CampaignID + "\x00" + sendID
	if s.opts.FailFirst > 0 && sendID != "" && s.failCounts[pair] < s.opts.FailFirst {
		s.failCounts[pair]++
		s.stats.Faults++
		return fail(s.opts.FailFirstStatus, http.StatusText(s.opts.FailFirstStatus))
	}
	if s.opts.HangRate > 0 && s.rng.Float64() < s.opts.HangRate {
		s.stats.Faults++
		return answer{hang: true}
	}
	if s.opts.ErrorRate > 0 && s.rng.Float64() < s.opts.ErrorRate {
		s.stats.Faults++
		st := 500 + s.rng.IntN(4)
		return fail(st, http.StatusText(st))
	}

	repeated := sendID != "" && s.pairs[pair] > 0
	if repeated {
		s.stats.RepeatedPairs++
		if s.pairs[pair] == 1 {
			s.stats.PairsTwice++
		}
		s.pairs[pair]++
		switch s.opts.Repeat {
		case RepeatReject:
			return fail(http.StatusBadRequest, "Send ID already exists")
		case RepeatSuccess:
			return answer{status: http.StatusCreated, body: map[string]string{"message": "success", "send_id": sendID}}
		}
	}
	if ws.used >= ws.Cap {
		s.stats.OverCap++
		return fail(http.StatusTooManyRequests, "Rate limit exceeded")
	}
	ws.used++
	s.stats.Created++
	s.stats.CallsPerPeriod[key+"@"+ws.periodStart.Format(time.RFC3339)]++
	if sendID == "" {
		sendID = fmt.Sprintf("sim-%x-%d", now.UnixNano(), s.stats.Created)
	} else if !repeated {
		s.pairs[pair] = 1
	}
	return answer{status: http.StatusCreated, body: map[string]string{"message": "success", "send_id": sendID}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
