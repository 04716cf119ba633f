package worker

import (
	"sync"
	"time"

	"github.com/sendid/sendid/quota"
)

// sharePacer hands the pacer to the ledger, whose Reserve then takes a
// group's token together with its slot: with it every replica paces a group
// from one bucket.
func sharePacer(l quota.Ledger, p *quota.Pacer) {
	l.PaceWith(p)
}

// ownership is what a lane knows of its group's pin: the server pins one
// replica's pulls (queue.EnsureLane) and renews the pin with each pull that
// carries it, until failover passes without one.
type ownership struct {
	mu       sync.Mutex
	pinned   bool      // the last message came with a pin and no pull since was refused
	renewed  time.Time // when the last pull carrying the pin was sent
	holding  bool      // a message of the group is in this replica's hands
	failover time.Duration
}

// pulled records a pull sent at start that ended with a message (got), or
// without one; refused says the server pinned another replica.
func (o *ownership) pulled(start time.Time, got, refused bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case refused:
		o.pinned = false
	case got:
		o.pinned, o.renewed, o.holding = true, start, true
	case o.pinned:
		o.renewed = start
	}
}

// released records that the lane's message was answered or put back.
func (o *ownership) released() {
	o.mu.Lock()
	o.holding = false
	o.mu.Unlock()
}

// owns reports whether this replica owns the group at now: it holds a
// message of the group, or its pin was renewed less than failover ago.
// An idle group's owner stops pulling and so, after failover, owns it no
// longer: the next job pins whichever replica pulls first.
func (o *ownership) owns(now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pinned && (o.holding || now.Sub(o.renewed) < o.failover)
}

// owns uses the wall clock, not the worker's: the server times the pin.
func (l *lane) owns() bool { return l.own.owns(time.Now()) }

// Owns reports whether this replica owns group now: exactly one replica
// works a group's FIFO at a time (queue.EnsureLane). False for an unknown
// or idle group.
func (w *Worker) Owns(group string) bool {
	l := w.lane(group)
	return l != nil && l.owns()
}
