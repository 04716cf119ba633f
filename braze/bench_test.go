package braze_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sendid/sendid/braze"
	"github.com/sendid/sendid/braze/brazetest"
)

// BenchmarkRoundTrip measures client→simulator round trips on loopback.
func BenchmarkRoundTrip(b *testing.B) {
	sim := brazetest.NewServer(brazetest.Options{DefaultCap: 1 << 30})
	defer sim.Close()
	c, err := braze.New(sim.URL)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := c.CreateSendID(ctx, "k", braze.CreateSendIDRequest{CampaignID: "c", SendID: fmt.Sprint(i)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}
