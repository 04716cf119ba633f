package quota_test

import (
	"archive/zip"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sendid/sendid/quota"
)

var allZones = flag.Bool("quota.allzones", false, "walk every zone of the timezone database at 15-minute steps over 2020-2035 (minutes); default: a fixed sample of zones, 15-minute steps around each day that is not 24 h")

// tzdb loads every zone of the Go timezone database in name order: the zip
// shipped with Go, else the system's /usr/share/zoneinfo.
func tzdb(t *testing.T) []*time.Location {
	t.Helper()
	var locs []*time.Location
	if zr, err := zip.OpenReader(filepath.Join(runtime.GOROOT(), "lib", "time", "zoneinfo.zip")); err == nil {
		defer zr.Close()
		for _, f := range zr.File {
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if loc, err := time.LoadLocationFromTZData(f.Name, data); err == nil {
				locs = append(locs, loc)
			}
		}
	} else {
		root := "/usr/share/zoneinfo"
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			name := strings.TrimPrefix(path, root+"/")
			if strings.HasPrefix(name, "posix/") || strings.HasPrefix(name, "right/") {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil || !strings.HasPrefix(string(data), "TZif") {
				return nil
			}
			if loc, err := time.LoadLocationFromTZData(name, data); err == nil {
				locs = append(locs, loc)
			}
			return nil
		})
	}
	slices.SortFunc(locs, func(a, b *time.Location) int { return strings.Compare(a.String(), b.String()) })
	if len(locs) < 300 {
		t.Fatalf("found %d zones; the timezone database is missing", len(locs))
	}
	return locs
}

var (
	walkFrom = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	walkTo   = time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC)
)

// TestCalendarEveryZone checks the day-long period table of the zones in
// the timezone database over 2020-2035: consecutive periods tile time (each
// starts where the last ended), each lasts 24 h minus the change of offset
// across it (22 to 26 hours wherever clocks move by at most 2 h), and every
// instant at 15-minute steps lies in PeriodAt of itself. By default it takes
// a fixed sample of zones (every eighth by name, plus the unusual ones) and
// walks 15-minute steps only around days that are not 24 h long; with
// -quota.allzones it walks every zone, every 15 minutes of the 16 years.
func TestCalendarEveryZone(t *testing.T) {
	t.Parallel()
	const step = 15 * time.Minute
	zones := tzdb(t)
	var periods, instants int
	jumps := map[string]int{} // zones with days outside 22-26 h, and how many
	if !*allZones {
		zones = sampleZones(zones)
	}
	for _, loc := range zones {
		pol := quota.Policy{Cap: 1, Burst: 1, Period: 24 * time.Hour, Location: loc}
		check := func(at time.Time) {
			instants++
			if per := pol.PeriodAt(at); !per.Contains(at) {
				t.Errorf("%s: %s (%s) lies outside PeriodAt = [%s, %s)", loc, at.UTC(), at.In(loc), per.Start.In(loc), per.End.In(loc))
			}
		}
		var odd []quota.Period
		per := pol.PeriodAt(walkFrom)
		for per.Start.Before(walkTo) {
			periods++
			// 22-26 h, unless the zone moves its clocks by more than two
			// hours at once (Antarctica/Casey: +08 <-> +11).
			n := per.End.Sub(per.Start)
			shift := zoneOffset(per.End, loc) - zoneOffset(per.Start.Add(-time.Second), loc)
			if (n < 22*time.Hour || n > 26*time.Hour) && (shift >= -2*time.Hour && shift <= 2*time.Hour) {
				t.Errorf("%s: period [%s, %s) lasts %s", loc, per.Start.In(loc), per.End.In(loc), n)
			}
			if n < 22*time.Hour || n > 26*time.Hour {
				jumps[loc.String()]++
			}
			if got := pol.PeriodAt(per.Start); got != per {
				t.Errorf("%s: PeriodAt(start %s) = [%s, %s)", loc, per.Start.In(loc), got.Start.In(loc), got.End.In(loc))
			}
			if per.End.Sub(per.Start) != day {
				odd = append(odd, per)
			}
			next := pol.PeriodAt(per.End)
			if !next.Start.Equal(per.End) {
				t.Errorf("%s: period after [%s, %s) starts at %s: gap or overlap", loc, per.Start.In(loc), per.End.In(loc), next.Start.In(loc))
				break
			}
			if *allZones {
				for at := per.Start.Truncate(step); at.Before(per.End); at = at.Add(step) {
					check(at)
				}
				check(per.End.Add(-time.Nanosecond))
			}
			per = next
		}
		if *allZones {
			continue
		}
		// Around every day that is not 24 hours long (the only places an
		// offset changes near a boundary): 15-minute steps over it and the
		// days either side.
		for _, short := range odd {
			for at := short.Start.Add(-day).Truncate(step); at.Before(short.End.Add(day)); at = at.Add(step) {
				check(at)
			}
		}
	}
	t.Logf("%d zones, %d periods, %d instants checked; days outside 22-26 h (clock moved by more than 2 h): %v", len(zones), periods, instants, jumps)
}

const day = 24 * time.Hour

func zoneOffset(t time.Time, loc *time.Location) time.Duration {
	_, off := t.In(loc).Zone()
	return time.Duration(off) * time.Second
}

// sampleZones keeps every eighth zone in name order, and the zones whose
// calendars are unusual: midnight DST gaps, half-hour and 45-minute offsets
// and DST, the extremes of UTC offset, three-hour jumps.
func sampleZones(all []*time.Location) []*time.Location {
	named := map[string]bool{
		"Atlantic/Azores": true, "America/Santiago": true, "America/Havana": true, "Asia/Beirut": true,
		"Australia/Lord_Howe": true, "Asia/Kathmandu": true, "Pacific/Chatham": true, "Pacific/Kiritimati": true,
		"Pacific/Pago_Pago": true, "Antarctica/Casey": true, "America/St_Johns": true, "Africa/Casablanca": true,
		"Asia/Gaza": true, "Africa/Cairo": true, "America/Asuncion": true, "Pacific/Easter": true,
	}
	var out []*time.Location
	for i, loc := range all {
		if i%8 == 0 || named[loc.String()] {
			out = append(out, loc)
		}
	}
	return out
}

// TestCalendarMidnightGaps covers the zones whose DST change skips local
// midnight (or repeats it): the day starts at the first existing instant,
// and a lane's ledger and admission agree on it.
func TestCalendarMidnightGaps(t *testing.T) {
	t.Parallel()
	cases := []struct {
		zone   string
		day    string // the local date of the DST day
		start  string // its first instant, RFC 3339 with offset
		length time.Duration
	}{
		// Clocks go from 24:00 to 01:00: the day begins at 01:00.
		{"Atlantic/Azores", "2026-03-29", "2026-03-29T01:00:00+00:00", 23 * time.Hour},
		{"America/Santiago", "2026-09-06", "2026-09-06T01:00:00-03:00", 23 * time.Hour},
		{"America/Havana", "2026-03-08", "2026-03-08T01:00:00-04:00", 23 * time.Hour},
		{"Asia/Beirut", "2026-03-29", "2026-03-29T01:00:00+03:00", 23 * time.Hour},
		// Fall back at midnight: 24:00 becomes 23:00 again, so the day
		// before lasts 25 hours and the next one starts at 00:00 new time.
		{"America/Santiago", "2026-04-04", "2026-04-04T00:00:00-03:00", 25 * time.Hour},
		{"America/Santiago", "2026-04-05", "2026-04-05T00:00:00-04:00", 24 * time.Hour},
		{"Asia/Beirut", "2026-10-24", "2026-10-24T00:00:00+03:00", 25 * time.Hour},
		{"Asia/Beirut", "2026-10-25", "2026-10-25T00:00:00+02:00", 24 * time.Hour},
		{"America/Havana", "2026-11-01", "2026-11-01T00:00:00-04:00", 25 * time.Hour},
	}
	for _, tc := range cases {
		loc := mustLoc(t, tc.zone)
		pol := quota.Policy{Cap: 1, Burst: 1, Period: day, Location: loc}
		start, err := time.Parse(time.RFC3339, tc.start)
		if err != nil {
			t.Fatal(err)
		}
		per := pol.PeriodAt(start.Add(time.Hour))
		if !per.Start.Equal(start) || per.End.Sub(per.Start) != tc.length {
			t.Errorf("%s %s: period [%s, %s) (%s), want it to start at %s and last %s",
				tc.zone, tc.day, per.Start.In(loc), per.End.In(loc), per.End.Sub(per.Start), start, tc.length)
		}
		if got := per.Start.In(loc).Format("2006-01-02"); got != tc.day {
			t.Errorf("%s: period starts on local %s, want %s", tc.zone, got, tc.day)
		}
		before := pol.PeriodAt(start.Add(-time.Nanosecond))
		if !before.End.Equal(start) {
			t.Errorf("%s %s: the period before ends at %s, want %s", tc.zone, tc.day, before.End.In(loc), start)
		}
		for at := start.Add(-2 * time.Hour); at.Before(start.Add(3 * time.Hour)); at = at.Add(time.Minute) {
			if p := pol.PeriodAt(at); !p.Contains(at) {
				t.Errorf("%s: %s outside its period [%s, %s)", tc.zone, at.In(loc), p.Start.In(loc), p.End.In(loc))
			}
		}
		if next := pol.Advance(before, 1); next != per {
			t.Errorf("%s %s: Advance gives [%s, %s)", tc.zone, tc.day, next.Start.In(loc), next.End.In(loc))
		}
	}
}
