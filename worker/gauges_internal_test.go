package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/sendid/sendid/quota"
)

// The gauges follow the worker's own ledger calls without reading the
// ledger again: a reservation is used at once, a release gives it back,
// a Sync (Braze's headers) asks for a re-read.
func TestGaugeLedgerFollowsCalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := quota.NewFakeClock(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	pols := quota.NewPolicies(zaptest.NewLogger(t))
	pols.Set("eu", quota.Policy{Cap: 10, Burst: 10, Period: 24 * time.Hour, Location: time.UTC})
	board := &gaugeBoard{}
	l := gaugeLedger{Ledger: quota.NewMemory(pols, clock), board: board}
	read := func() groupGauge {
		board.mu.Lock()
		defer board.mu.Unlock()
		return *board.get("eu")
	}
	if _, err := l.Usage(ctx, "eu"); err != nil {
		t.Fatal(err)
	}
	var slots []quota.Slot
	for range 3 {
		s, err := l.Reserve(ctx, "eu")
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, s)
	}
	if g := read(); g.u.Used != 3 || g.u.Remaining != 7 || g.dirty {
		t.Fatalf("after 3 reservations: used %d remaining %d dirty %v", g.u.Used, g.u.Remaining, g.dirty)
	}
	if err := l.Release(ctx, slots[0]); err != nil {
		t.Fatal(err)
	}
	if g := read(); g.u.Used != 2 || g.u.Remaining != 8 {
		t.Fatalf("after a release: used %d remaining %d", g.u.Used, g.u.Remaining)
	}
	if err := l.Sync(ctx, "eu", quota.Observation{Known: true, Limit: 10, Remaining: 5}); err != nil {
		t.Fatal(err)
	}
	if !read().dirty {
		t.Fatal("a Sync did not ask for a re-read")
	}
	u, err := l.Usage(ctx, "eu")
	if err != nil {
		t.Fatal(err)
	}
	if g := read(); g.u != u {
		t.Fatalf("a read is not recorded: %+v vs %+v", g.u, u)
	}

	// The backlog moves with admissions and acknowledgements once known.
	board.backlogMoved("eu", 1)
	if read().haveBacklog {
		t.Fatal("a backlog not read yet was made up")
	}
	board.update("eu", func(g *groupGauge) { g.backlog, g.haveBacklog = 4, true })
	board.backlogMoved("eu", 1)
	board.backlogMoved("eu", -1)
	board.backlogMoved("eu", -1)
	if g := read(); g.backlog != 3 {
		t.Fatalf("backlog %d, want 3", g.backlog)
	}
}

// fakeMsg answers acknowledgements; nothing else is called.
type fakeMsg struct {
	jetstream.Msg
}

func (fakeMsg) Ack() error                       { return nil }
func (fakeMsg) Term() error                      { return nil }
func (fakeMsg) Nak() error                       { return nil }
func (fakeMsg) NakWithDelay(time.Duration) error { return nil }

// A lane's message leaves the backlog once, when it is acknowledged or
// terminated, never when it is put back.
func TestCountedMsgLeavesBacklogOnce(t *testing.T) {
	t.Parallel()
	board := &gaugeBoard{}
	board.update("eu", func(g *groupGauge) { g.backlog, g.haveBacklog = 5, true })
	m := board.counted("eu", fakeMsg{})
	_ = m.Nak()
	_ = m.NakWithDelay(time.Second)
	if got := board.get("eu").backlog; got != 5 {
		t.Fatalf("a put-back job left the backlog: %d", got)
	}
	_ = m.Ack()
	_ = m.Ack()
	_ = m.Term()
	if got := board.get("eu").backlog; got != 4 {
		t.Fatalf("backlog %d after one job answered, want 4", got)
	}
}
