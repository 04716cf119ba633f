package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/queue"
	"github.com/sendid/sendid/quota"
)

// sizes of one run.
type sizes struct {
	throughputJobs int // rows a, b
	overheadJobs   int // row e, at 100 jobs/s
	manyJobs       int // row g
	manyGroups     int // row g
	backlogJobs    int // row c
	backlogGroups  int // rows c, d, f
	pausedFor      time.Duration
	idleFor        time.Duration
	quotaBacklog   int // row h, jobs per group
}

var presets = map[string]sizes{
	"smoke":   {throughputJobs: 200, overheadJobs: 100, manyJobs: 400, manyGroups: 20, backlogJobs: 2000, backlogGroups: 50, pausedFor: 2 * time.Second, idleFor: 2 * time.Second, quotaBacklog: 100},
	"reduced": {throughputJobs: 3000, overheadJobs: 1000, manyJobs: 10000, manyGroups: 100, backlogJobs: 50000, backlogGroups: 1000, pausedFor: 10 * time.Second, idleFor: 10 * time.Second, quotaBacklog: 200},
	"full":    {throughputJobs: 20000, overheadJobs: 3000, manyJobs: 50000, manyGroups: 100, backlogJobs: 1000000, backlogGroups: 1000, pausedFor: 20 * time.Second, idleFor: 20 * time.Second, quotaBacklog: 200},
}

type row struct{ name, figure, target, verdict string }

type bench struct {
	dir     string
	worker  string // binary
	ns      *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	sim     *brazetest.Server
	rows    []row
	verbose bool
	profile string
	// profileRow is the row (c, g, or p: row c while paused) whose worker profile goes to profile;
	// the bench process (the embedded NATS server and the publisher) is
	// profiled alongside, to profile + ".server".
	profileRow string
	floor      bool // row c also measures the server's own bound
	results    bool // row c: the results stream on, notices stored there
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sendid-bench", flag.ContinueOnError)
	size := fs.String("size", "reduced", "smoke, reduced or full")
	workerBin := fs.String("worker", "", "sendid-worker binary (default: go build ./cmd/sendid-worker)")
	only := fs.String("rows", "abcdefghij", "rows to run")
	verbose := fs.Bool("v", false, "progress on stderr")
	profile := fs.String("profile", "", "write a 10s CPU profile of the worker during the row -profile-row to this file (and of the bench process, with the NATS server, to this file.server)")
	profileRow := fs.String("profile-row", "g", "the row -profile profiles: c, g, or p (row c while every lane is paused)")
	floor := fs.Bool("floor", false, "row c also measures pull + ack alone on a stream of the same shape (the NATS server's bound)")
	results := fs.Bool("results", false, "row c: jobs without reply_to and the results stream on (notices stored by SENDID_RESULTS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sz, ok := presets[*size]
	if !ok {
		return fmt.Errorf("%w: -size must be smoke, reduced or full", flag.ErrHelp)
	}
	dir, err := os.MkdirTemp("", "sendid-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *profileRow != "c" && *profileRow != "g" && *profileRow != "p" {
		return fmt.Errorf("%w: -profile-row must be c, g or p", flag.ErrHelp)
	}
	b := &bench{dir: dir, worker: *workerBin, verbose: *verbose, profile: *profile, profileRow: *profileRow, floor: *floor, results: *results}
	if b.worker == "" {
		b.worker = filepath.Join(dir, "sendid-worker")
		cmd := exec.Command("go", "build", "-o", b.worker, "./cmd/sendid-worker")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("build worker: %w", err)
		}
	}
	if err := b.start(); err != nil {
		return err
	}
	defer b.stop()
	started := time.Now()
	has := func(r byte) bool { return strings.IndexByte(*only, r) >= 0 }
	if has('a') || has('b') || has('e') {
		if err := b.throughput(ctx, sz, has); err != nil {
			return err
		}
	}
	if has('g') {
		if err := b.manyGroups(ctx, sz); err != nil {
			return err
		}
	}
	if has('c') || has('f') {
		if err := b.backlog(ctx, sz, has); err != nil {
			return err
		}
	}
	if has('d') {
		if err := b.rollover(ctx, sz); err != nil {
			return err
		}
	}
	if has('h') {
		if err := b.quotaDay(ctx, sz.quotaBacklog); err != nil {
			return err
		}
	}
	if has('i') {
		if err := b.scrapeRow(ctx, sz); err != nil { // scrape.go
			return err
		}
	}
	if has('j') {
		if err := b.traceRow(ctx, min(sz.overheadJobs, 300), sz.throughputJobs); err != nil { // trace.go
			return err
		}
	}
	host, _ := os.Hostname()
	fmt.Printf("\nsendid-bench -size %s on %s (%d CPUs), %s, wall %s\n\n", *size, host, numCPU(), goVersion(), time.Since(started).Round(time.Second))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROW\tFIGURE\tTARGET\t")
	for _, r := range b.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.name, r.figure, r.target, r.verdict)
	}
	return tw.Flush()
}

func (b *bench) add(name, figure, target string, ok bool) {
	v := "meets target"
	if !ok {
		v = "MISSES target"
	}
	b.rows = append(b.rows, row{name, figure, target, v})
}

func (b *bench) logf(format string, a ...any) {
	if b.verbose {
		fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	}
}

func (b *bench) start() error {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(b.dir, "js"),
		NoSigs: true, NoLog: true, JetStreamMaxMemory: 1 << 30})
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return fmt.Errorf("nats server not ready")
	}
	b.ns = ns
	if b.nc, err = nats.Connect(ns.ClientURL()); err != nil {
		return err
	}
	b.js, _ = jetstream.New(b.nc)
	b.sim = brazetest.NewServer(brazetest.Options{DefaultCap: 1 << 30, DefaultPeriod: 24 * time.Hour})
	return nil
}

func (b *bench) stop() {
	b.sim.Close()
	b.nc.Close()
	b.ns.Shutdown()
	b.ns.WaitForShutdown()
}

// worker is a running sendid-worker subprocess.
type worker struct {
	cmd  *exec.Cmd
	http string
	out  *bytes.Buffer
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startWorker runs the worker with app groups name→cap on a fresh subject
// prefix (so runs do not see each other's streams' consumers).
func (b *bench) startWorker(prefix string, groups []string, capN, burst int, period time.Duration) (*worker, error) {
	// Each row starts from an empty stream: rows must not see each other's
	// consumers or records.
	ctx := context.Background()
	for _, st := range []string{queue.Stream, queue.ResultsStream} {
		_ = b.js.DeleteStream(ctx, st)
	}
	for _, kv := range []string{queue.JobsBucket, queue.PairsBucket} {
		_ = b.js.DeleteKeyValue(ctx, kv)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "subject_prefix: %s\nstreams: {results: %t, recheck_interval: 1h}\napp_groups:\n", prefix, b.results && prefix == "bl")
	for _, g := range groups {
		fmt.Fprintf(&cfg, "  %s: {api_key_env: BENCH_KEY, daily_cap: %d, burst: %d}\n", g, capN, burst)
	}
	path := filepath.Join(b.dir, prefix+".yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		return nil, err
	}
	w := &worker{http: fmt.Sprintf("127.0.0.1:%d", freePort()), out: &bytes.Buffer{}}
	w.cmd = exec.Command(b.worker, "-pprof")
	level := "warn"
	if b.verbose {
		level = "info"
	}
	w.cmd.Env = []string{"SENDID_CONFIG=" + path, "SENDID_NATS_URL=" + b.ns.ClientURL(), "SENDID_BRAZE_URL=" + b.sim.URL,
		"BENCH_KEY=bench-key", "SENDID_QUOTA_PERIOD=" + period.String(), "SENDID_LOG_LEVEL=" + level, "SENDID_HTTP_ADDR=" + w.http}
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	if err := w.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		resp, err := http.Get("http://" + w.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return w, nil
			}
		}
		if time.Now().After(deadline) {
			w.stop()
			return nil, fmt.Errorf("worker not ready: %s", w.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (w *worker) stop() {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	_ = w.cmd.Wait()
}

// cpu is the process's user+system CPU time.
func (w *worker) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", w.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// peakRSS is the process's high-water resident set.
func (w *worker) peakRSS() int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// collector records when each job's final result arrived.
type collector struct {
	mu    sync.Mutex
	at    map[string]time.Time
	count atomic.Int64
}

func (b *bench) collect(subject string) (*collector, func(), error) {
	c := &collector{at: map[string]time.Time{}}
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		var r struct{ ID, Status string }
		if json.Unmarshal(m.Data, &r) != nil || r.Status == queue.StatusDeferred {
			return
		}
		c.mu.Lock()
		if _, dup := c.at[r.ID]; !dup {
			c.at[r.ID] = time.Now()
			c.count.Add(1)
		}
		c.mu.Unlock()
	})
	if err != nil {
		return nil, nil, err
	}
	_ = sub.SetPendingLimits(-1, -1)
	return c, func() { _ = sub.Unsubscribe() }, b.nc.Flush()
}

func (c *collector) wait(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for c.count.Load() < int64(n) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%d of %d results after %s", c.count.Load(), n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// publishAsync publishes bodies with JetStream acks, many in flight.
func (b *bench) publishAsync(subject func(i int) string, body func(i int) []byte, n int, sent []time.Time) error {
	for i := range n {
		if sent != nil {
			sent[i] = time.Now()
		}
		if _, err := b.js.PublishAsync(subject(i), body(i)); err != nil {
			return err
		}
		if i%2000 == 1999 {
			<-b.js.PublishAsyncComplete()
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
		return nil
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("publish acks timed out")
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

// throughput runs rows a, b and e.
func (b *bench) throughput(ctx context.Context, sz sizes, has func(byte) bool) error {
	n := sz.throughputJobs
	// b. Baseline: one pull consumer → POST → publish result → ack.
	base, err := b.baseline(ctx, n)
	if err != nil {
		return err
	}
	w, err := b.startWorker("tp", []string{"default"}, 100_000_000, 1_000_000, time.Second)
	if err != nil {
		return err
	}
	defer w.stop()
	c, unsub, err := b.collect("bench.tp")
	if err != nil {
		return err
	}
	defer unsub()
	sent := make([]time.Time, n)
	start := time.Now()
	err = b.publishAsync(func(int) string { return "tp.jobs" },
		func(i int) []byte {
			return fmt.Appendf(nil, `{"campaign_id":"c","send_id":"tp-%d","id":"tp-%d","reply_to":"bench.tp"}`, i, i)
		}, n, sent)
	if err != nil {
		return err
	}
	if err := c.wait(ctx, n, 5*time.Minute); err != nil {
		return fmt.Errorf("row a: %w", err)
	}
	elapsed := time.Since(start)
	lat := make([]time.Duration, 0, n)
	c.mu.Lock()
	for i := range n {
		lat = append(lat, c.at[fmt.Sprintf("tp-%d", i)].Sub(sent[i]))
	}
	c.mu.Unlock()
	rate := float64(n) / elapsed.Seconds()
	b.add("a. throughput, 1 app group", fmt.Sprintf("%.0f jobs/s, p50 %s, p99 %s", rate, ms(percentile(lat, .5)), ms(percentile(lat, .99))), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.add("b. bare baseline (same server, simulator)", fmt.Sprintf("%.0f jobs/s", base), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.add("   ratio a/b", fmt.Sprintf("%.2f", rate/base), ">= 0.60", rate/base >= 0.6)
	b.logf("row a: %.0f jobs/s; baseline %.0f", rate, base)
	// b'. The same loop as a process of its own, as the worker is: the
	// in-process baseline saves the cross-process hops the worker pays.
	w.stop()
	bare, err := b.bareThroughput(ctx, n) // bare.go
	if err != nil {
		return err
	}
	b.add("b'. bare baseline in its own process", fmt.Sprintf("%.0f jobs/s", bare), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.add("   ratio a/b'", fmt.Sprintf("%.2f", rate/bare), ">= 0.60", rate/bare >= 0.6)
	if w, err = b.startWorker("tp", []string{"default"}, 100_000_000, 1_000_000, time.Second); err != nil {
		return err
	}
	defer w.stop()

	if has('e') {
		// e. At 100 jobs/s: end-to-end latency minus the Braze call itself.
		direct := b.directCalls(ctx, 500)
		m := sz.overheadJobs
		over, err := b.pacedLatency(ctx, "tp.jobs", "ov", m, direct)
		if err != nil {
			return fmt.Errorf("row e: %w", err)
		}
		p99 := percentile(over, .99)
		b.add("e. added latency at 100 jobs/s", fmt.Sprintf("p50 %s, p99 %s (over a %s Braze call)", ms(percentile(over, .5)), ms(p99), ms(direct)), "p99 <= 2 ms", p99 <= 2*time.Millisecond)
		bare, err := b.bareLatency(ctx, m, direct) // bare.go
		if err != nil {
			return err
		}
		b.add("   bare loop in its own process, same rate", fmt.Sprintf("p50 %s, p99 %s", ms(percentile(bare, .5)), ms(percentile(bare, .99))), "", true)
		b.rows[len(b.rows)-1].verdict = ""
	}
	return nil
}

// pacedLatency publishes m jobs to subject at 100 jobs/s, with ids and
// send_ids "<prefix>-<i>" and reply_to bench.<prefix>, and returns each
// one's publish-to-answer latency less direct (the Braze call itself).
func (b *bench) pacedLatency(ctx context.Context, subject, prefix string, m int, direct time.Duration) ([]time.Duration, error) {
	c, unsub, err := b.collect("bench." + prefix)
	if err != nil {
		return nil, err
	}
	defer unsub()
	sent := make([]time.Time, m)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for i := range m {
		<-tick.C
		sent[i] = time.Now()
		if err := b.nc.Publish(subject, fmt.Appendf(nil, `{"campaign_id":"c","send_id":"%s-%d","id":"%s-%d","reply_to":"bench.%s"}`, prefix, i, prefix, i, prefix)); err != nil {
			return nil, err
		}
	}
	if err := c.wait(ctx, m, 2*time.Minute); err != nil {
		return nil, err
	}
	over := make([]time.Duration, 0, m)
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range m {
		over = append(over, c.at[fmt.Sprintf("%s-%d", prefix, i)].Sub(sent[i])-direct)
	}
	return over, nil
}

// directCalls is the median client→simulator round trip. The baseline and
// the direct calls use their own simulator workspaces (keys), so that the
// worker's ledger and Braze's count agree as they would in production.
func (b *bench) directCalls(ctx context.Context, n int) time.Duration {
	cl, _ := braze.New(b.sim.URL)
	var d []time.Duration
	for i := range n {
		t := time.Now()
		_, _ = cl.CreateSendID(ctx, "direct-key", braze.CreateSendIDRequest{CampaignID: "c", SendID: fmt.Sprint("direct-", i)})
		d = append(d, time.Since(t))
	}
	return percentile(d, .5)
}

// baseline is the bare loop: fetch one, POST, publish the result, ack.
func (b *bench) baseline(ctx context.Context, n int) (float64, error) {
	st, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "BASE", Subjects: []string{"base.jobs"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		return 0, err
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "base", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return 0, err
	}
	c, unsub, err := b.collect("bench.base")
	if err != nil {
		return 0, err
	}
	defer unsub()
	cl, _ := braze.New(b.sim.URL)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for got := 0; got < n; {
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				continue
			}
			for m := range batch.Messages() {
				got++
				var j queue.Job
				_ = json.Unmarshal(m.Data(), &j)
				resp, _ := cl.CreateSendID(ctx, "base-key", braze.CreateSendIDRequest{CampaignID: j.CampaignID, SendID: j.SendID})
				out, _ := json.Marshal(queue.Result{ID: j.ID, Status: queue.StatusCreated, SendID: resp.SendID, At: time.Now()})
				_ = b.nc.Publish(j.ReplyTo, out)
				_ = m.Ack()
			}
		}
	}()
	start := time.Now()
	if err := b.publishAsync(func(int) string { return "base.jobs" }, func(i int) []byte {
		return fmt.Appendf(nil, `{"campaign_id":"c","send_id":"base-%d","id":"base-%d","reply_to":"bench.base"}`, i, i)
	}, n, nil); err != nil {
		return 0, err
	}
	if err := c.wait(ctx, n, 5*time.Minute); err != nil {
		return 0, fmt.Errorf("baseline: %w", err)
	}
	<-done
	return float64(n) / time.Since(start).Seconds(), nil
}

func groupNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}

// manyGroups is row g.
func (b *bench) manyGroups(ctx context.Context, sz sizes) error {
	groups := groupNames("g", sz.manyGroups)
	w, err := b.startWorker("mg", groups, 100_000_000, 1_000_000, time.Second)
	if err != nil {
		return err
	}
	defer w.stop()
	c, unsub, err := b.collect("bench.mg")
	if err != nil {
		return err
	}
	defer unsub()
	n := sz.manyJobs
	start := time.Now()
	profiled := b.profileDuring(w, "g")
	defer profiled()
	if err := b.publishAsync(func(i int) string { return "mg.jobs." + groups[i%len(groups)] }, func(i int) []byte {
		return fmt.Appendf(nil, `{"campaign_id":"c","send_id":"mg-%d","id":"mg-%d","reply_to":"bench.mg"}`, i, i)
	}, n, nil); err != nil {
		return err
	}
	if err := c.wait(ctx, n, 10*time.Minute); err != nil {
		return fmt.Errorf("row g: %w", err)
	}
	rate := float64(n) / time.Since(start).Seconds()
	b.add(fmt.Sprintf("g. %d app groups, unlimited caps", len(groups)), fmt.Sprintf("%.0f jobs/s", rate), ">= 8000 jobs/s", rate >= 8000)
	return nil
}

// exhaust fills every group's ledger key for the current period.
func (b *bench) exhaust(ctx context.Context, groups []string, capN int, period time.Duration) error {
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: queue.LedgerBucket, History: 1, TTL: 72 * time.Hour, Storage: jetstream.FileStorage})
	if err != nil {
		return err
	}
	per := quota.Policy{Cap: capN, Burst: 1, Period: period}.PeriodAt(time.Now())
	for _, g := range groups {
		if _, err := kv.Put(ctx, quota.Key(g, per), fmt.Appendf(nil, `{"used":%d}`, capN)); err != nil {
			return err
		}
	}
	return nil
}

// backlog runs rows f (idle) and c (deferred backlog).
func (b *bench) backlog(ctx context.Context, sz sizes, has func(byte) bool) error {
	groups := groupNames("b", sz.backlogGroups)
	if err := b.exhaust(ctx, groups, 1, 24*time.Hour); err != nil {
		return err
	}
	w, err := b.startWorker("bl", groups, 1, 1, 24*time.Hour)
	if err != nil {
		return err
	}
	defer w.stop()
	time.Sleep(3 * time.Second) // let start-up probes settle
	if has('f') {
		c0 := w.cpu()
		time.Sleep(sz.idleFor)
		pct := 100 * float64(w.cpu()-c0) / float64(sz.idleFor)
		b.add(fmt.Sprintf("f. idle CPU, %d app groups", len(groups)), fmt.Sprintf("%.2f%% of a core", pct), "≈ 0 (< 0.5%)", pct < 0.5)
	}
	if !has('c') {
		return nil
	}
	n := sz.backlogJobs
	adm, err := b.js.Consumer(ctx, queue.Stream, queue.AdmissionName)
	if err != nil {
		return err
	}
	// Answers go to the jobs' reply subject, or with -results to the
	// results stream's subjects (no reply_to: the worker waits for the
	// stream to store each notice).
	replyTo, answersOn := `,"reply_to":"bench.bl"`, "bench.bl"
	if b.results {
		replyTo, answersOn = "", "bl.results.>"
	}
	ans, unsub, err := b.countAnswers(answersOn, "bl-", n)
	if err != nil {
		return err
	}
	defer unsub()
	profiled := b.profileDuring(w, "c")
	defer profiled()
	cpu0 := w.cpu()
	start := time.Now()
	if err := b.publishAsync(func(i int) string { return "bl.jobs." + groups[i%len(groups)] }, func(i int) []byte {
		return fmt.Appendf(nil, `{"campaign_id":"c","send_id":"bl-%d","id":"bl-%d"%s}`, i, i, replyTo)
	}, n, nil); err != nil {
		return err
	}
	b.logf("row c: %d jobs published in %s", n, time.Since(start))
	deadline := time.Now().Add(30 * time.Minute)
	for {
		info, err := adm.Info(ctx)
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("row c: admission did not finish")
		}
		time.Sleep(100 * time.Millisecond)
	}
	rate := float64(n) / time.Since(start).Seconds()
	perJob := (w.cpu() - cpu0) / time.Duration(n)
	// Each notice is published before its job's ack: allow for delivery.
	answered := ans.wait(n, 30*time.Second)
	rss := w.peakRSS()
	pausedProfile := b.profileDuring(w, "p")
	defer pausedProfile()
	c0 := w.cpu()
	time.Sleep(sz.pausedFor)
	pct := 100 * float64(w.cpu()-c0) / float64(sz.pausedFor)
	b.add(fmt.Sprintf("c. %d deferred jobs / %d groups: admission", n, len(groups)), fmt.Sprintf("%.0f jobs/s", rate), ">= 20000 jobs/s", rate >= 20000)
	b.add("   worker CPU per job admitted", fmt.Sprintf("%.0f µs", float64(perJob)/float64(time.Microsecond)), "", true)
	b.rows[len(b.rows)-1].verdict = ""
	b.add("   every job answered (deferred notice or answer)", fmt.Sprintf("%d of %d", answered, n), fmt.Sprintf("%d of %d", n, n), answered == int64(n))
	b.add("   worker peak RSS", fmt.Sprintf("%.1f MiB", float64(rss)/(1<<20)), "<= 128 MiB", rss <= 128<<20)
	b.add("   CPU while every lane is paused", fmt.Sprintf("%.2f%% of a core", pct), "< 1%", pct < 1)
	if !b.floor {
		return nil
	}
	w.stop()
	// What the NATS server alone allows, on a stream of the same shape.
	m := min(n, 50_000)
	for _, v := range []struct {
		lanes int
		one   bool
	}{{len(groups), false}, {len(groups), true}, {0, false}, {0, true}} {
		f, err := b.admissionFloor(ctx, groups, v.lanes, v.one, m)
		if err != nil {
			return fmt.Errorf("row c: %w", err)
		}
		filters := "admission's 2 filters"
		if v.one {
			filters = "1 filter (jobs.*)"
		}
		b.add(fmt.Sprintf("   floor: server alone, pull + ack, %s, %d lane consumers", filters, v.lanes), fmt.Sprintf("%.0f jobs/s (%d jobs)", f, m), "", true)
		b.rows[len(b.rows)-1].verdict = ""
	}
	return nil
}

// rollover is row d: every group exhausted with one job waiting; at the
// period boundary, how long until each has made its first call.
func (b *bench) rollover(ctx context.Context, sz sizes) error {
	groups := groupNames("r", sz.backlogGroups)
	const period = 30 * time.Second
	per := quota.Policy{Cap: 1, Burst: 1, Period: period}.PeriodAt(time.Now())
	if time.Until(per.End) < 20*time.Second { // room to start and admit
		time.Sleep(time.Until(per.End) + 100*time.Millisecond)
		per = quota.Policy{Cap: 1, Burst: 1, Period: period}.PeriodAt(time.Now())
	}
	if err := b.exhaust(ctx, groups, 1, period); err != nil {
		return err
	}
	w, err := b.startWorker("ro", groups, 1, 1, period)
	if err != nil {
		return err
	}
	defer w.stop()
	first := len(b.sim.Requests())
	if err := b.publishAsync(func(i int) string { return "ro.jobs." + groups[i] }, func(i int) []byte {
		return fmt.Appendf(nil, `{"campaign_id":"%s","send_id":"ro","reply_to":"bench.ro"}`, groups[i])
	}, len(groups), nil); err != nil {
		return err
	}
	if time.Now().After(per.End) {
		return fmt.Errorf("row d: start-up took past the period boundary; try again")
	}
	time.Sleep(time.Until(per.End) + 5*time.Second)
	seen := map[string]time.Time{}
	for _, r := range b.sim.Requests()[first:] {
		if _, ok := seen[r.CampaignID]; !ok && strings.HasPrefix(r.CampaignID, "r") {
			seen[r.CampaignID] = r.At
		}
	}
	var last time.Duration
	for _, g := range groups {
		at, ok := seen[g]
		if !ok {
			last = -1
			break
		}
		last = max(last, at.Sub(per.End))
	}
	if last < 0 {
		b.logf("row d: worker output:\n%s", w.out.String())
		b.add(fmt.Sprintf("d. rollover, %d groups", len(groups)), fmt.Sprintf("only %d of %d groups called within 5 s", len(seen), len(groups)), "<= 1 s", false)
		return nil
	}
	b.add(fmt.Sprintf("d. rollover, %d groups", len(groups)), fmt.Sprintf("last first call %s after the boundary", ms(last)), "<= 1 s", last <= time.Second)
	return nil
}
