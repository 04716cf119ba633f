package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/sendid/sendid/queue"
)

// jobKey names a job of a group in the gateway's inbox subjects, its
// Nats-Msg-Id and its stored answer: a digest, so any printable job id is
// safe in a subject token and two groups' ids never meet.
func jobKey(group, id string) string {
	h := sha256.New()
	h.Write([]byte(group))
	h.Write([]byte{0})
	h.Write([]byte(id))
	return hex.EncodeToString(h.Sum(nil)[:20])
}

// waiters hands answers arriving on the inbox to the requests waiting for
// them; several requests may wait for one job (a retry with the same
// Idempotency-Key).
type waiters struct {
	mu sync.Mutex
	m  map[string][]chan queue.Result
}

func (w *waiters) add(key string) chan queue.Result {
	ch := make(chan queue.Result, 2) // a notice, then the final result
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string][]chan queue.Result{}
	}
	w.m[key] = append(w.m[key], ch)
	return ch
}

// remove unregisters ch; nothing is sent to it afterwards.
func (w *waiters) remove(key string, ch chan queue.Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.m[key]
	for i, c := range list {
		if c == ch {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(w.m, key)
	} else {
		w.m[key] = list
	}
}

// deliver gives r to every waiter of key; false when nobody waits.
func (w *waiters) deliver(key string, r queue.Result) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	list := w.m[key]
	for _, ch := range list {
		select {
		case ch <- r:
		default: // the waiter already holds two answers and is leaving
		}
	}
	return len(list) > 0
}

// onAnswer receives a result or notice on the gateway's inbox. An answer
// nobody waits for any more (the request was answered 202) is stored for
// GET /jobs/<id>.
func (g *Gateway) onAnswer(m *nats.Msg) {
	key := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	var r queue.Result
	if err := json.Unmarshal(m.Data, &r); err != nil {
		g.log.Warn("gateway inbox: answer is not a result", zap.String("subject", m.Subject), zap.Error(err))
		return
	}
	if g.waiters.deliver(key, r) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.remember(ctx, key, r, false)
}

// StoreBucket is the KV bucket of answers the gateway keeps for
// GET /jobs/<id>: deferred notices, answers that arrived after their request
// was answered 202, and "queued" for jobs with no answer yet. Final results
// of jobs the lanes ran are read from the worker's job records first.
const StoreBucket = "SENDID_GATEWAY"

// StatusQueued is the status GET /jobs/<id> shows for a job published by
// the gateway that has no notice or result yet.
const StatusQueued = "queued"

// remember stores r under key. onlyNew keeps an answer already stored ("queued"
// never replaces a notice or a result).
func (g *Gateway) remember(ctx context.Context, key string, r queue.Result, onlyNew bool) {
	data, err := json.Marshal(r)
	if err != nil {
		g.log.Error("gateway answer not encodable", zap.Error(err))
		return
	}
	if onlyNew {
		_, err = g.store.Create(ctx, key, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return
		}
	} else {
		_, err = g.store.Put(ctx, key, data)
	}
	if err != nil {
		g.log.Warn("gateway answer not stored; GET /jobs may not find it", zap.String("job_id", r.ID), zap.Error(err))
	}
}

// recall reads a stored answer.
func (g *Gateway) recall(ctx context.Context, key string) (queue.Result, bool, error) {
	var r queue.Result
	e, err := g.store.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("%s get: %w", StoreBucket, err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, false, fmt.Errorf("%s decode: %w", StoreBucket, err)
	}
	return r, true, nil
}
