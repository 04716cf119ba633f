package ui

import (
	"sync"

	"github.com/sendid/sendid/queue"
)

// RecentSize is how many results and notices a group's page shows.
const RecentSize = 50

// Recent keeps the last RecentSize results and notices this replica
// published, per app group. Groups are bounded by the caller: only results of
// configured groups are kept (an unknown group name in a subject must not
// grow memory).
type Recent struct {
	mu    sync.Mutex
	known func(group string) bool
	rings map[string]*ring
}

type ring struct {
	buf  [RecentSize]queue.Result
	next int
	n    int
}

// NewRecent returns an empty store keeping results of groups known accepts.
func NewRecent(known func(group string) bool) *Recent {
	return &Recent{known: known, rings: map[string]*ring{}}
}

// Add records r (queue.Publisher.OnResult calls it).
func (s *Recent) Add(r queue.Result) {
	if s.known != nil && !s.known(r.AppGroup) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rg := s.rings[r.AppGroup]
	if rg == nil {
		rg = &ring{}
		s.rings[r.AppGroup] = rg
	}
	rg.buf[rg.next] = r
	rg.next = (rg.next + 1) % RecentSize
	rg.n = min(rg.n+1, RecentSize)
}

// Last returns the group's results, newest first.
func (s *Recent) Last(group string) []queue.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	rg := s.rings[group]
	if rg == nil {
		return nil
	}
	out := make([]queue.Result, 0, rg.n)
	for i := 1; i <= rg.n; i++ {
		out = append(out, rg.buf[(rg.next-i+RecentSize)%RecentSize])
	}
	return out
}
