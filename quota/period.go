package quota

import (
	"fmt"
	"time"
)

const day = 24 * time.Hour

// Policy is an app group's quota: Cap calls per Period, paced with Burst,
// with periods starting at midnight in Location.
type Policy struct {
	Cap      int
	Burst    int
	Period   time.Duration
	Location *time.Location // nil means UTC
}

// Validate reports a policy that cannot be used.
func (p Policy) Validate() error {
	switch {
	case p.Cap < 1:
		return fmt.Errorf("cap %d: must be >= 1", p.Cap)
	case p.Burst < 1:
		return fmt.Errorf("burst %d: must be >= 1", p.Burst)
	case p.Period < time.Second:
		return fmt.Errorf("period %s: must be >= 1s", p.Period)
	}
	return nil
}

// Period is a quota period [Start, End).
type Period struct {
	Start, End time.Time
}

// Contains reports whether t falls in the period.
func (p Period) Contains(t time.Time) bool { return !t.Before(p.Start) && t.Before(p.End) }

func (p Policy) loc() *time.Location {
	if p.Location == nil {
		return time.UTC
	}
	return p.Location
}

// calendar reports whether periods follow local days: a whole number of days
// starting at local midnight (so a DST day lasts 23 or 25 hours).
func (p Policy) calendar() bool { return p.Period >= day && p.Period%day == 0 }

// PeriodAt returns the period containing t. Day-long periods (and whole
// multiples of a day) start at local midnight; other lengths start at
// multiples of Period since the Unix epoch.
func (p Policy) PeriodAt(t time.Time) Period {
	if !p.calendar() {
		n := int64(p.Period)
		u := t.UnixNano()
		start := u - ((u%n)+n)%n
		return Period{Start: time.Unix(0, start), End: time.Unix(0, start+n)}
	}
	days := int64(p.Period / day)
	lt := t.In(p.loc())
	y, m, d := lt.Date()
	civil := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
	civil -= ((civil % days) + days) % days
	return p.calendarPeriod(civil, days)
}

func (p Policy) calendarPeriod(civilDay, days int64) Period {
	s := time.Unix(civilDay*86400, 0).UTC()
	start := time.Date(s.Year(), s.Month(), s.Day(), 0, 0, 0, 0, p.loc())
	return Period{Start: start, End: start.AddDate(0, 0, int(days))}
}

// Advance returns the period k periods after per (k >= 0).
func (p Policy) Advance(per Period, k int) Period {
	if k == 0 {
		return per
	}
	if !p.calendar() {
		d := time.Duration(k) * p.Period
		return Period{Start: per.Start.Add(d), End: per.End.Add(d)}
	}
	days := int(p.Period / day)
	start := per.Start.In(p.loc()).AddDate(0, 0, k*days)
	return Period{Start: start, End: start.AddDate(0, 0, days)}
}

// Interval is the pacer's spacing between calls: Period / Cap.
func (p Policy) Interval() time.Duration { return p.Period / time.Duration(p.Cap) }
