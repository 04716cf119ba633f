package ops_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/sendid/sendid/internal/ops"
)

const token = "admin-token-0123456789"

func handler(level zap.AtomicLevel, admin ops.Admin) http.Handler {
	return ops.Handler(prometheus.NewRegistry(), level, func() error { return nil }, true, ops.WithAdmin(admin))
}

// PUT /loglevel and pprof need the admin token or a loopback peer; GET
// /loglevel, metrics and probes stay open.
func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, path, peer, auth string
		admin                          ops.Admin
		want                           int
	}{
		{"remote without token", "PUT", "/loglevel", "192.0.2.7:4000", "", ops.Admin{Token: token, AllowLoopback: true}, 403},
		{"remote with wrong token", "PUT", "/loglevel", "192.0.2.7:4000", "Bearer nope-nope-nope-nope", ops.Admin{Token: token, AllowLoopback: true}, 403},
		{"remote with token", "PUT", "/loglevel", "192.0.2.7:4000", "Bearer " + token, ops.Admin{Token: token, AllowLoopback: true}, 200},
		{"remote, no token configured", "PUT", "/loglevel", "[2001:db8::1]:4000", "Bearer ", ops.Admin{AllowLoopback: true}, 403},
		{"loopback allowed", "PUT", "/loglevel", "127.0.0.1:4000", "", ops.Admin{AllowLoopback: true}, 200},
		{"loopback v6 allowed", "PUT", "/loglevel", "[::1]:4000", "", ops.Admin{AllowLoopback: true}, 200},
		{"loopback refused when not allowed", "PUT", "/loglevel", "127.0.0.1:4000", "", ops.Admin{Token: token}, 403},
		{"forwarded header is not a peer", "PUT", "/loglevel", "192.0.2.7:4000", "", ops.Admin{AllowLoopback: true}, 403},
		{"remote pprof", "GET", "/debug/pprof/cmdline", "192.0.2.7:4000", "", ops.Admin{Token: token, AllowLoopback: true}, 403},
		{"pprof with token", "GET", "/debug/pprof/cmdline", "192.0.2.7:4000", "Bearer " + token, ops.Admin{Token: token}, 200},
		{"remote GET loglevel", "GET", "/loglevel", "192.0.2.7:4000", "", ops.Admin{}, 200},
		{"remote metrics", "GET", "/metrics", "192.0.2.7:4000", "", ops.Admin{}, 200},
		{"remote readyz", "GET", "/readyz", "192.0.2.7:4000", "", ops.Admin{}, 200},
	}
	for _, c := range cases {
		level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
		r := httptest.NewRequest(c.method, c.path, strings.NewReader(`{"level":"debug"}`))
		r.RemoteAddr = c.peer
		r.Header.Set("X-Forwarded-For", "127.0.0.1")
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		handler(level, c.admin).ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, w.Code, w.Body, c.want)
		}
		if c.method == "PUT" && (level.Level() == zapcore.DebugLevel) != (c.want == 200) {
			t.Errorf("%s: level is %s after %d", c.name, level.Level(), w.Code)
		}
	}
}

// Levels above error would silence the error log: refused.
func TestLogLevelValues(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]int{`{"level":"warn"}`: 200, `{"level":"error"}`: 200, `{"level":"fatal"}`: 400,
		`{"level":"panic"}`: 400, `{"level":"dpanic"}`: 400, `{"level":"nope"}`: 400, `not json`: 400} {
		level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
		r := httptest.NewRequest("PUT", "/loglevel", strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		handler(level, ops.Admin{AllowLoopback: true}).ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("%s: %d, want %d", body, w.Code, want)
		}
		if want != 200 && level.Level() != zapcore.InfoLevel {
			t.Errorf("%s changed the level to %s", body, level.Level())
		}
	}
}

// endless is an endless JSON string body, {"level":"aaaa…, that counts what
// was read from it: a decoder that reads it all buffers it all.
type endless struct{ n atomic.Int64 }

func (z *endless) Read(p []byte) (int, error) {
	const head = `{"level":"`
	start := z.n.Load()
	for i := range p {
		if off := start + int64(i); off < int64(len(head)) {
			p[i] = head[off]
		} else {
			p[i] = 'a'
		}
	}
	z.n.Add(int64(len(p)))
	return len(p), nil
}

func serve(t *testing.T, h http.Handler, tm ops.Timeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := ops.NewServer(h, tm)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return ln.Addr().String()
}

// A 300 MiB body, declared or chunked, is answered 413 without being read
// and without growing the heap. Not parallel: it measures the heap.
func TestHugeBodyRefusedAtOnce(t *testing.T) {
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	addr := serve(t, handler(level, ops.Admin{AllowLoopback: true}), ops.Timeouts{})
	const size = 300 << 20
	for _, declared := range []bool{true, false} {
		body := &endless{}
		var r io.Reader = io.LimitReader(body, size)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		req, err := http.NewRequest("PUT", "http://"+addr+"/loglevel", r)
		if err != nil {
			t.Fatal(err)
		}
		if declared {
			req.ContentLength = size
		} else {
			req.ContentLength = -1 // chunked
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("declared=%v: %v", declared, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		runtime.ReadMemStats(&after)
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("declared=%v: status %d, body bytes read by the client %d, allocated %d KiB", declared, resp.StatusCode, body.n.Load(), allocated>>10)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("declared=%v: status %d, want 413", declared, resp.StatusCode)
		}
		if body.n.Load() >= size/2 {
			t.Errorf("declared=%v: %d of %d bytes were sent before the answer", declared, body.n.Load(), size)
		}
		if allocated > 32<<20 {
			t.Errorf("declared=%v: %d MiB allocated while refusing the body", declared, allocated>>20)
		}
	}
	if level.Level() != zapcore.InfoLevel {
		t.Errorf("level changed to %s", level.Level())
	}
}

// closedWithin reports whether the server closes conn within bound (a bound
// on the test, not a timing assertion).
func closedWithin(conn net.Conn, bound time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(bound))
	buf := make([]byte, 4096)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// A trickled body and an idle keep-alive connection are closed by the
// server's own timeouts.
func TestSlowAndIdleConnectionsClosed(t *testing.T) {
	t.Parallel()
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	addr := serve(t, handler(level, ops.Admin{AllowLoopback: true}), ops.Timeouts{ReadHeader: 200 * time.Millisecond, Read: 300 * time.Millisecond, Write: time.Second, Idle: 300 * time.Millisecond})

	// Trickle: headers, then one body byte every 50 ms of a 100-byte body.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /loglevel HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
	sent, broken := 0, false
	for ; sent < 100 && !broken; sent++ {
		if _, err := conn.Write([]byte(" ")); err != nil {
			broken = true
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !broken && !closedWithin(conn, 10*time.Second) {
		t.Fatalf("trickled body: connection still open after %d bytes over %s", sent, 50*time.Millisecond*time.Duration(sent))
	}
	if level.Level() != zapcore.InfoLevel {
		t.Errorf("a trickled request changed the level")
	}

	// Idle keep-alive: one request, then silence.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprintf(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(idle), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if !closedWithin(idle, 10*time.Second) {
		t.Fatal("idle keep-alive connection still open after 10s")
	}
}
