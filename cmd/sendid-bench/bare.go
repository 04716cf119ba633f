package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/queue"
)

// bareCommand is the argument that makes this binary run the bare loop
// (runBare) instead of the bench: the baseline then runs as a process of
// its own, as the worker does, so that rows a and e compare like with like.
const bareCommand = "bare-loop"

// runBare is the bare loop in a process of its own: it binds to a durable
// pull consumer, prints "ready", then fetches one message at a time, makes
// the Braze call, publishes the result to the job's reply_to and acks,
// until it has handled n messages or a minute passes without one.
func runBare(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet(bareCommand, flag.ContinueOnError)
	url := fs.String("nats", "", "NATS URL")
	brazeURL := fs.String("braze", "", "Braze URL")
	stream := fs.String("stream", "", "stream")
	durable := fs.String("durable", "", "durable consumer")
	n := fs.Int("n", 0, "messages to handle")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, err := nats.Connect(*url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.Consumer(ctx, *stream, *durable)
	if err != nil {
		return err
	}
	cl, err := braze.New(*brazeURL)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	idle := time.Now()
	for got := 0; got < *n; {
		if time.Since(idle) > time.Minute || ctx.Err() != nil {
			return fmt.Errorf("bare loop: %d of %d messages", got, *n)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		for m := range batch.Messages() {
			got++
			idle = time.Now()
			var j queue.Job
			_ = json.Unmarshal(m.Data(), &j)
			resp, _ := cl.CreateSendID(ctx, "base-key", braze.CreateSendIDRequest{CampaignID: j.CampaignID, SendID: j.SendID})
			out, _ := json.Marshal(queue.Result{ID: j.ID, Status: queue.StatusCreated, SendID: resp.SendID, At: time.Now()})
			_ = nc.Publish(j.ReplyTo, out)
			_ = m.Ack()
		}
	}
	return nc.Flush()
}

// bareProcess is a running bare loop.
type bareProcess struct {
	cmd  *exec.Cmd
	done chan error
}

// startBare creates stream name (subject "<prefix>.jobs") with a durable
// consumer and starts the bare loop on it in a subprocess, for n messages.
func (b *bench) startBare(ctx context.Context, name, prefix string, n int) (*bareProcess, error) {
	st, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".jobs"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
	if err != nil {
		return nil, err
	}
	if _, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bare", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, bareCommand, "-nats", b.ns.ClientURL(), "-braze", b.sim.URL, "-stream", name, "-durable", "bare", "-n", fmt.Sprint(n))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &bareProcess{cmd: cmd, done: make(chan error, 1)}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == "ready"
		ready <- ok
		for sc.Scan() {
		}
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("bare loop: %w: %s", err, stderr.String())
		}
		p.done <- err
	}()
	select {
	case ok := <-ready:
		if !ok {
			return nil, errors.Join(fmt.Errorf("bare loop did not start"), <-p.done)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("bare loop did not start within 30s")
	}
	return p, nil
}

// wait waits for the bare loop to end.
func (p *bareProcess) wait(timeout time.Duration) error {
	select {
	case err := <-p.done:
		return err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("bare loop still running after %s", timeout)
	}
}

// bareThroughput is row b': the bare loop as a process of its own, n jobs
// published at once.
func (b *bench) bareThroughput(ctx context.Context, n int) (float64, error) {
	p, err := b.startBare(ctx, "BAREP", "barep", n)
	if err != nil {
		return 0, err
	}
	c, unsub, err := b.collect("bench.barep")
	if err != nil {
		return 0, err
	}
	defer unsub()
	start := time.Now()
	if err := b.publishAsync(func(int) string { return "barep.jobs" }, func(i int) []byte {
		return fmt.Appendf(nil, `{"campaign_id":"c","send_id":"barep-%d","id":"barep-%d","reply_to":"bench.barep"}`, i, i)
	}, n, nil); err != nil {
		return 0, err
	}
	if err := c.wait(ctx, n, 5*time.Minute); err != nil {
		return 0, fmt.Errorf("bare process: %w", err)
	}
	rate := float64(n) / time.Since(start).Seconds()
	return rate, p.wait(time.Minute)
}

// bareLatency is row e's baseline: the bare loop as a process of its own,
// m jobs at 100 jobs/s; it returns publish-to-answer latencies less the
// direct Braze call.
func (b *bench) bareLatency(ctx context.Context, m int, direct time.Duration) ([]time.Duration, error) {
	p, err := b.startBare(ctx, "BAREL", "barel", m)
	if err != nil {
		return nil, err
	}
	over, err := b.pacedLatency(ctx, "barel.jobs", "barel", m, direct) // bench.go
	if err != nil {
		return nil, fmt.Errorf("bare latency: %w", err)
	}
	return over, p.wait(time.Minute)
}
