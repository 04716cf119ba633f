package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/braze/brazetest"
	"github.com/sendid/sendid/config"
	"github.com/sendid/sendid/internal/natstest"
	"github.com/sendid/sendid/queue"
)

// replicaSet is n worker processes against one NATS server and one
// simulator. Worker i calls the simulator under the path prefix /w<i>, so
// the test knows which process made each call.
type replicaSet struct {
	t      *testing.T
	bin    string
	ns     *natstest.Server
	sim    *brazetest.Sim
	srv    *httptest.Server
	cfg    string
	logDir string
	procs  []*proc

	hookMu sync.Mutex
	hook   func(worker int, w http.ResponseWriter, r *http.Request) bool // true: handled
}

// setHook makes hook see every call first.
func (rs *replicaSet) setHook(hook func(worker int, w http.ResponseWriter, r *http.Request) bool) {
	rs.hookMu.Lock()
	rs.hook = hook
	rs.hookMu.Unlock()
}

func newReplicaSet(t *testing.T, simOpts brazetest.Options, yaml string) *replicaSet {
	t.Helper()
	rs := &replicaSet{t: t, bin: buildWorker(t), ns: natstest.Start(t), sim: brazetest.New(simOpts), logDir: t.TempDir()}
	rs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n int
		if _, err := fmt.Sscanf(r.URL.Path, "/w%d/", &n); err != nil {
			http.NotFound(w, r)
			return
		}
		r.URL.Path = r.URL.Path[strings.Index(r.URL.Path[1:], "/")+1:]
		rs.hookMu.Lock()
		hook := rs.hook
		rs.hookMu.Unlock()
		if hook != nil && hook(n, w, r) {
			return
		}
		rs.sim.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		rs.srv.CloseClientConnections()
		rs.srv.Close()
	})
	rs.cfg = filepath.Join(t.TempDir(), "sendid.yaml")
	if err := os.WriteFile(rs.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for i := range max(len(rs.procs), 1) {
			b, err := os.ReadFile(rs.logPath(i))
			if err != nil {
				t.Logf("worker %d log: %v", i, err)
			}
			t.Logf("worker %d log (tail):\n%s", i, tail(string(b), 6000))
		}
	})
	return rs
}

func (rs *replicaSet) logPath(i int) string {
	return filepath.Join(rs.logDir, fmt.Sprintf("worker-%d.log", i))
}

// start launches worker i (again, after a kill) and waits until it is ready.
func (rs *replicaSet) start(i int) {
	rs.t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePort(rs.t))
	env := []string{
		"SENDID_CONFIG=" + rs.cfg, "SENDID_NATS_URL=" + rs.ns.URL(), fmt.Sprintf("SENDID_BRAZE_URL=%s/w%d", rs.srv.URL, i),
		"SENDID_LOG_LEVEL=info", "SENDID_SHUTDOWN_TIMEOUT=5s", "SENDID_BRAZE_TIMEOUT=4s", "SENDID_HTTP_ADDR=" + httpAddr,
		"KEY_G1=key-g1", "KEY_G2=key-g2", "KEY_G3=key-g3", "KEY_G4=key-g4", "SENDID_BRAZE_API_KEY=key-default",
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
	}
	p := spawn(rs.t, rs.bin, env, rs.logPath(i))
	for len(rs.procs) <= i {
		rs.procs = append(rs.procs, nil)
	}
	rs.procs[i] = p
	d := &daemon{http: "http://" + httpAddr}
	waitFor(rs.t, fmt.Sprintf("worker %d ready", i), 30*time.Second, func() bool { return d.status("/readyz") == 200 })
}

func (rs *replicaSet) kill(i int) {
	p := rs.procs[i]
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
	p.log.Close()
}

// stopAll ends every live worker with SIGTERM, which must exit 0.
func (rs *replicaSet) stopAll() {
	rs.t.Helper()
	for i, p := range rs.procs {
		if p.cmd.ProcessState != nil {
			continue
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			rs.t.Fatal(err)
		}
		if err := p.cmd.Wait(); err != nil {
			rs.t.Errorf("worker %d: SIGTERM exit: %v", i, err)
		}
		p.log.Close()
	}
}

const fourGroups = `
quota:
  period: 24h
app_groups:
  g1: {api_key_env: KEY_G1, daily_cap: 1000000, burst: 1000}
  g2: {api_key_env: KEY_G2, daily_cap: 1000000, burst: 1000}
  g3: {api_key_env: KEY_G3, daily_cap: 1000000, burst: 1000}
  g4: {api_key_env: KEY_G4, daily_cap: 1000000, burst: 1000}
`

// Issue 10 "Must hold" #1: two and three worker processes, 4 app groups,
// 400 jobs in which 60 pairs appear twice under different ids (the copy
// right behind the original), published concurrently: no pair reaches
// Braze twice, every job gets exactly one final result, each pair exactly
// one duplicate:false, and — with the lanes pinned to one replica each —
// Braze sees each group's calls in publish order.
func TestReplicasCallEachPairOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs worker processes")
	}
	t.Parallel()
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d_workers", n), func(t *testing.T) {
			rs := newReplicaSet(t, brazetest.Options{DefaultCap: 1 << 20, Latency: 2 * time.Millisecond}, fourGroups)
			for i := range n {
				rs.start(i)
			}
			nc, js := rs.ns.Connect()
			res := subscribe(t, nc, "test.results")

			// Per group: 85 distinct pairs, 15 of them twice; 100 jobs.
			type pub struct{ id, send string }
			plan := map[string][]pub{}
			for gi := 1; gi <= 4; gi++ {
				g := fmt.Sprintf("g%d", gi)
				for p := range 85 {
					send := fmt.Sprintf("%s-p%d", g, p)
					plan[g] = append(plan[g], pub{fmt.Sprintf("%s-j%d", g, p), send})
					if p%17 == 3 || p%17 == 9 || p%17 == 14 { // 15 of 85
						plan[g] = append(plan[g], pub{fmt.Sprintf("%s-j%d-again", g, p), send})
					}
				}
				if len(plan[g]) != 100 {
					t.Fatalf("plan for %s has %d jobs", g, len(plan[g]))
				}
			}
			var wg sync.WaitGroup
			for g, jobs := range plan {
				wg.Go(func() {
					for _, j := range jobs {
						body := fmt.Sprintf(`{"campaign_id":"c","send_id":%q,"id":%q,"reply_to":"test.results"}`, j.send, j.id)
						if _, err := js.Publish(context.Background(), "sendid.jobs."+g, []byte(body)); err != nil {
							t.Errorf("publish: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			waitFor(t, "every job answered", 120*time.Second, func() bool { return res.finals() == 400 })
			time.Sleep(500 * time.Millisecond) // a second answer to any job would arrive now
			rs.stopAll()

			res.mu.Lock()
			defer res.mu.Unlock()
			firstBy := map[string]string{} // send_id → send_id Braze returned
			notDup := map[string]int{}
			for g, jobs := range plan {
				for _, j := range jobs {
					rs := res.by[j.id]
					if len(rs) != 1 || rs[0].Status != queue.StatusCreated || rs[0].AppGroup != g {
						t.Errorf("%s: want one created result in %s, got %+v", j.id, g, rs)
						continue
					}
					if !rs[0].Duplicate {
						notDup[j.send]++
					}
					if prev, ok := firstBy[j.send]; ok && prev != rs[0].SendID {
						t.Errorf("pair %s answered with send_ids %s and %s", j.send, prev, rs[0].SendID)
					}
					firstBy[j.send] = rs[0].SendID
				}
			}
			for send := range firstBy {
				if notDup[send] != 1 {
					t.Errorf("pair %s: %d results with duplicate:false, want 1", send, notDup[send])
				}
			}
			calls := map[string][]string{} // key → send_ids in call order
			perPair := map[string]int{}
			for _, r := range rs.sim.Requests() {
				calls[r.Key] = append(calls[r.Key], r.SendID)
				perPair[r.Key+"/"+r.SendID]++
			}
			twice := 0
			for p, c := range perPair {
				if c > 1 {
					twice++
					t.Errorf("pair %s called %d times", p, c)
				}
			}
			st := rs.sim.Stats()
			t.Logf("%d workers: %d jobs, %d calls, %d pairs created, %d pairs called twice", n, 400, st.Calls, st.Created, twice)
			if st.Calls != 340 || st.PairsTwice != 0 {
				t.Errorf("simulator: %d calls (want 340), %d pairs twice (want 0)", st.Calls, st.PairsTwice)
			}

			// Call order per group: the publish order of first occurrences.
			// It needs one owner per group's FIFO (pinned lane consumers,
			// issue 10 part A); without it replicas interleave.
			ctx := context.Background()
			pinned := true
			for g := range plan {
				c, err := js.Consumer(ctx, queue.Stream, queue.LaneConsumer(g))
				if err != nil {
					t.Fatal(err)
				}
				info, err := c.Info(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if window := config.Default().Streams.DuplicateWindow; info.Config.AckWait > window {
					t.Errorf("lane %s AckWait %s exceeds the default duplicate_window %s", g, info.Config.AckWait, window)
				}
				pinned = pinned && info.Config.PriorityPolicy == jetstream.PriorityPolicyPinned
			}
			if adm, err := js.Consumer(ctx, queue.Stream, queue.AdmissionName); err != nil {
				t.Fatal(err)
			} else if ai, err := adm.Info(ctx); err != nil || ai.Config.AckWait > config.Default().Streams.DuplicateWindow {
				t.Errorf("admission AckWait above the default duplicate_window: %v %+v", err, ai)
			}
			if !pinned {
				t.Logf("call order per group not checked: the lane consumers are not pinned to one replica")
				return
			}
			for g, jobs := range plan {
				var want []string
				for _, j := range jobs {
					if !slices.Contains(want, j.send) {
						want = append(want, j.send)
					}
				}
				if got := calls["key-"+g]; !slices.Equal(got, want) {
					t.Errorf("%s: call order differs from publish order:\n got %v\nwant %v", g, got, want)
				}
			}
		})
	}
}

// Issue 10 "Must hold" #3: the replica making a call is SIGKILLed while
// Braze works on it (simulator latency 200 ms; the simulator has created
// the pair, the worker never hears the answer). The job's call is in doubt.
// With in_doubt: fail no pair reaches Braze twice and the job ends
// failed/outcome_unknown; with retry every job ends created and the
// in-doubt job's result says in_doubt:true. Both figures are logged.
func TestInDoubtAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills worker processes")
	}
	t.Parallel()
	for _, policy := range []string{config.InDoubtFail, config.InDoubtRetry} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			const jobs = 20
			yaml := "app_groups:\n  default:\n    daily_cap: 1000000\n    burst: 1000\n    in_doubt: " + policy + "\n"
			rs := newReplicaSet(t, brazetest.Options{DefaultCap: 1 << 20, Latency: 200 * time.Millisecond}, yaml)
			type call struct {
				worker int
				send   string
			}
			arrived := make(chan call, 1)
			killed := make(chan struct{})
			var killOnce sync.Once
			unblock := func() { killOnce.Do(func() { close(killed) }) }
			t.Cleanup(unblock) // a held call never outlives the test (the server's Close waits for it)
			var once sync.Once
			var seen int
			var mu sync.Mutex
			rs.setHook(func(n int, w http.ResponseWriter, r *http.Request) bool {
				mu.Lock()
				seen++
				target := seen == 6
				mu.Unlock()
				if !target {
					return false
				}
				handled := false
				once.Do(func() {
					handled = true
					rec := httptest.NewRecorder()
					rs.sim.ServeHTTP(rec, r) // Braze creates the pair ...
					var body struct {
						SendID string `json:"send_id"`
					}
					_ = json.Unmarshal(rec.Body.Bytes(), &body)
					arrived <- call{n, body.SendID}
					<-killed // ... and the caller dies before the answer
				})
				return handled
			})
			for i := range 2 {
				rs.start(i)
			}
			nc, _ := rs.ns.Connect()
			res := subscribe(t, nc, "test.results")
			publishJobs(t, nc, jobs, "doubt")
			var c call
			select {
			case c = <-arrived:
			case <-time.After(60 * time.Second):
				t.Fatal("no sixth call")
			}
			rs.kill(c.worker)
			unblock()
			t.Logf("worker %d killed during the call for pair %s", c.worker, c.send)
			// The other replica takes the group over; the killed call's
			// message comes back after the consumer's AckWait.
			waitFor(t, "every job answered", 120*time.Second, func() bool { return res.finals() == jobs })
			rs.stopAll()

			res.mu.Lock()
			defer res.mu.Unlock()
			doubtID := c.send // publishJobs gives each job the same id and send_id
			for i := range jobs {
				id := fmt.Sprintf("doubt-%d", i)
				rs := res.by[id]
				if len(rs) == 0 {
					t.Errorf("%s: no result", id)
					continue
				}
				r := rs[len(rs)-1]
				switch {
				case id == doubtID && policy == config.InDoubtFail:
					if r.Status != queue.StatusFailed || r.Error == nil || r.Error.Code != queue.CodeOutcomeUnknown || !r.InDoubt {
						t.Errorf("%s (in doubt, fail): %+v", id, r)
					}
				case id == doubtID:
					if r.Status != queue.StatusCreated || !r.InDoubt {
						t.Errorf("%s (in doubt, retry): %+v", id, r)
					}
				default:
					if r.Status != queue.StatusCreated || r.InDoubt {
						t.Errorf("%s: %+v", id, r)
					}
				}
			}
			st := rs.sim.Stats()
			t.Logf("in_doubt %s: %d jobs, %d calls, %d pairs created, pairs that reached Braze twice: %d, in-doubt job result: %s",
				policy, jobs, st.Calls, st.Created, st.PairsTwice, res.by[doubtID][len(res.by[doubtID])-1].Status)
			want := map[string]int{config.InDoubtFail: 0, config.InDoubtRetry: 1}[policy]
			if st.PairsTwice != want {
				t.Errorf("%d pairs reached Braze twice, want %d", st.PairsTwice, want)
			}
		})
	}
}
