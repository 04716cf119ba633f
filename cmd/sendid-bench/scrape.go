package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"
)

// scrapeRow is row i: how long a /metrics scrape takes with many app groups
// (sz.backlogGroups: 1,000 in the reduced and full sizes), once every
// group's quota series is there. The gauges come from memory, so the
// scrape makes no NATS call.
func (b *bench) scrapeRow(ctx context.Context, sz sizes) error {
	groups := groupNames("s", sz.backlogGroups)
	w, err := b.startWorker("sc", groups, 100, 10, 24*time.Hour)
	if err != nil {
		return err
	}
	defer w.stop()
	url := "http://" + w.http + "/metrics"
	get := func() (string, time.Duration, error) {
		start := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			return "", 0, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return string(body), time.Since(start), err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		text, _, err := get()
		if err != nil {
			return fmt.Errorf("row i: %w", err)
		}
		if n := strings.Count(text, "\nsendid_quota_remaining{"); n == len(groups) {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("row i: not every group's series after 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var took []time.Duration
	for range 50 {
		text, d, err := get()
		if err != nil {
			return fmt.Errorf("row i: %w", err)
		}
		if n := strings.Count(text, "\nsendid_quota_remaining{"); n != len(groups) {
			return fmt.Errorf("row i: a scrape had %d of %d groups' series", n, len(groups))
		}
		took = append(took, d)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	worst := took[len(took)-1]
	b.add(fmt.Sprintf("i. /metrics scrape, %d app groups (50 scrapes)", len(groups)),
		fmt.Sprintf("median %s, max %s", ms(took[len(took)/2]), ms(worst)), "< 100 ms, every series", worst < 100*time.Millisecond)
	return nil
}
