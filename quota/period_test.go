package quota_test

import (
	"testing"
	"time"

	"github.com/sendid/sendid/quota"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestPeriods(t *testing.T) {
	t.Parallel()
	ny := mustLoc(t, "America/New_York")
	kol := mustLoc(t, "Asia/Kolkata")
	utc := time.UTC
	ts := func(s string, loc *time.Location) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cases := []struct {
		name       string
		pol        quota.Policy
		at         time.Time
		start, end time.Time
		length     time.Duration
	}{
		{"utc before midnight", quota.Policy{Period: 24 * time.Hour}, ts("2026-11-27 23:59:59", utc), ts("2026-11-27 00:00:00", utc), ts("2026-11-28 00:00:00", utc), 24 * time.Hour},
		{"utc at midnight", quota.Policy{Period: 24 * time.Hour}, ts("2026-11-28 00:00:00", utc), ts("2026-11-28 00:00:00", utc), ts("2026-11-29 00:00:00", utc), 24 * time.Hour},
		{"new york spring forward (23h)", quota.Policy{Period: 24 * time.Hour, Location: ny}, ts("2026-03-08 12:00:00", ny), ts("2026-03-08 00:00:00", ny), ts("2026-03-09 00:00:00", ny), 23 * time.Hour},
		{"new york fall back (25h)", quota.Policy{Period: 24 * time.Hour, Location: ny}, ts("2026-11-01 01:30:00", ny), ts("2026-11-01 00:00:00", ny), ts("2026-11-02 00:00:00", ny), 25 * time.Hour},
		{"new york ordinary day", quota.Policy{Period: 24 * time.Hour, Location: ny}, ts("2026-11-27 03:00:00", utc), ts("2026-11-26 00:00:00", ny), ts("2026-11-27 00:00:00", ny), 24 * time.Hour},
		{"kolkata +05:30", quota.Policy{Period: 24 * time.Hour, Location: kol}, ts("2026-11-27 18:29:59", utc), ts("2026-11-27 00:00:00", kol), ts("2026-11-28 00:00:00", kol), 24 * time.Hour},
		{"kolkata next day", quota.Policy{Period: 24 * time.Hour, Location: kol}, ts("2026-11-27 18:30:00", utc), ts("2026-11-28 00:00:00", kol), ts("2026-11-29 00:00:00", kol), 24 * time.Hour},
		{"10s periods", quota.Policy{Period: 10 * time.Second, Location: ny}, ts("2026-11-27 09:00:07", utc), ts("2026-11-27 09:00:00", utc), ts("2026-11-27 09:00:10", utc), 10 * time.Second},
		{"7s periods from the epoch", quota.Policy{Period: 7 * time.Second}, time.Unix(700, 0), time.Unix(700, 0), time.Unix(707, 0), 7 * time.Second},
		{"2-day periods", quota.Policy{Period: 48 * time.Hour}, ts("1970-01-04 05:00:00", utc), ts("1970-01-03 00:00:00", utc), ts("1970-01-05 00:00:00", utc), 48 * time.Hour},
	}
	for _, tc := range cases {
		per := tc.pol.PeriodAt(tc.at)
		if !per.Start.Equal(tc.start) || !per.End.Equal(tc.end) || per.End.Sub(per.Start) != tc.length {
			t.Errorf("%s: got [%s, %s) (%s), want [%s, %s) (%s)", tc.name, per.Start, per.End, per.End.Sub(per.Start), tc.start, tc.end, tc.length)
		}
		if !per.Contains(tc.at) {
			t.Errorf("%s: period does not contain %s", tc.name, tc.at)
		}
		next := tc.pol.Advance(per, 1)
		if !next.Start.Equal(per.End) || tc.pol.PeriodAt(next.Start) != next {
			t.Errorf("%s: Advance gives %v", tc.name, next)
		}
	}
}
