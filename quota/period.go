package quota

import (
	"fmt"
	"time"
)

const day = 24 * time.Hour

// Policy is an app group's quota: Cap calls per Period, paced with Burst,
// with periods starting at the first instant of the local day in Location.
type Policy struct {
	Cap      int
	Burst    int
	Period   time.Duration
	Location *time.Location // nil means UTC
	// ProbeInterval is how often a lane may make one probe call when the
	// rest of a period is blocked only by uncertain charges; 0 means
	// DefaultProbeInterval.
	ProbeInterval time.Duration

	// Set by Policies: when this cap was configured (newest configuration
	// rules the shared record), and the calendar in force before a change of
	// Period or Location took effect.
	capAt time.Time
	prior *transition
}

// transition keeps the calendar in force until at: a change of period or
// timezone takes effect at the boundary of the period it was loaded in.
type transition struct {
	at     time.Time
	before Policy
}

// DefaultProbeInterval is the probe interval when a policy sets none.
const DefaultProbeInterval = 5 * time.Minute

func (p Policy) probeInterval() time.Duration {
	if p.ProbeInterval > 0 {
		return p.ProbeInterval
	}
	return DefaultProbeInterval
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
	case p.ProbeInterval < 0:
		return fmt.Errorf("probe interval %s: must be >= 0", p.ProbeInterval)
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
// starting at the first instant of a local day (so a DST day lasts 23 or 25
// hours).
func (p Policy) calendar() bool { return p.Period >= day && p.Period%day == 0 }

// sameCalendar reports whether p and q cut time into the same periods.
func (p Policy) sameCalendar(q Policy) bool {
	if p.Period != q.Period {
		return false
	}
	return !p.calendar() || p.loc().String() == q.loc().String()
}

// PeriodAt returns the period containing t. Day-long periods (and whole
// multiples of a day) start at the first instant of a local day: local
// midnight, or on a day whose midnight does not exist (a DST gap) the first
// instant after it. Other lengths start at multiples of Period since the
// Unix epoch. While a change of calendar is pending, periods before it
// follow the old calendar, and the first one after it starts at the change.
func (p Policy) PeriodAt(t time.Time) Period {
	if tr := p.prior; tr != nil {
		if t.Before(tr.at) {
			return tr.before.PeriodAt(t)
		}
		per := p.basePeriodAt(t)
		if per.Start.Before(tr.at) {
			per.Start = tr.at
		}
		return per
	}
	return p.basePeriodAt(t)
}

func (p Policy) basePeriodAt(t time.Time) Period {
	if !p.calendar() {
		n := int64(p.Period)
		u := t.UnixNano()
		start := u - ((u%n)+n)%n
		return Period{Start: time.Unix(0, start), End: time.Unix(0, start+n)}
	}
	days := int64(p.Period / day)
	y, m, d := t.In(p.loc()).Date()
	civil := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
	civil -= ((civil % days) + days) % days
	per := p.calendarPeriod(civil, days)
	// A fall-back transition can make the local date run backwards for an
	// hour (Asia/Beirut: 00:00 back to 23:00): such an instant belongs to
	// the period that has already begun. Bounded: at most one step each way.
	for range 2 {
		switch {
		case t.Before(per.Start):
			civil -= days
		case !t.Before(per.End):
			civil += days
		default:
			return per
		}
		per = p.calendarPeriod(civil, days)
	}
	return per
}

func (p Policy) calendarPeriod(civilDay, days int64) Period {
	return Period{Start: dayStart(civilDay, p.loc()), End: dayStart(civilDay+days, p.loc())}
}

// dayStart is the first instant whose local date in loc is civil day
// civilDay (days since 1970-01-01) or later. time.Date cannot be used: on a
// day whose midnight falls in a DST gap it returns an instant an hour early,
// on the day before. Nor can Time.ZoneBounds: with the slim zone data Go
// ships, it reports false bounds at year ends.
//
// Local midnight under any offset (-12h to +14h) lies within [wall-14h,
// wall+12h], where wall is that midnight read as UTC. Within a stretch of
// constant offset the local clock runs with real time, so the answer is
// the earliest "midnight in that offset" clipped to its stretch; the
// stretches are the window's one or two offsets (zones change offset months
// apart), split at the change found by bisection to the second.
func dayStart(civilDay int64, loc *time.Location) time.Time {
	wall := time.Unix(civilDay*86400, 0)
	lo, hi := wall.Add(-14*time.Hour), wall.Add(12*time.Hour)
	offA, offB := offset(lo, loc), offset(hi, loc)
	candA := wall.Add(-offA)
	if offA == offB {
		return candA
	}
	for hi.Sub(lo) > time.Second { // offset(lo) == offA, offset(hi) == offB
		mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Second)
		if !mid.After(lo) {
			mid = lo.Add(time.Second)
		}
		if offset(mid, loc) == offA {
			lo = mid
		} else {
			hi = mid
		}
	}
	change := hi // the first second under offB
	candB := wall.Add(-offB)
	if candB.Before(change) {
		candB = change
	}
	if candA.Before(change) && candA.Before(candB) {
		return candA
	}
	return candB
}

func offset(t time.Time, loc *time.Location) time.Duration {
	_, off := t.In(loc).Zone()
	return time.Duration(off) * time.Second
}

// Advance returns the period k periods after per (k >= 0).
func (p Policy) Advance(per Period, k int) Period {
	// Across a pending calendar change, step one period at a time; the
	// change lies at most one period ahead of the one it was loaded in.
	for ; k > 0 && p.prior != nil && per.End.Before(p.prior.at.Add(2*p.Period)); k-- {
		per = p.PeriodAt(per.End)
	}
	if k == 0 {
		return per
	}
	if !p.calendar() {
		d := time.Duration(k) * p.Period
		return Period{Start: per.Start.Add(d), End: per.End.Add(d)}
	}
	days := int64(p.Period / day)
	y, m, d := per.Start.In(p.loc()).Date()
	civil := time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
	civil -= ((civil % days) + days) % days
	return p.calendarPeriod(civil+int64(k)*days, days)
}

// Interval is the pacer's spacing between calls: the cap spread over the
// period less its guard, (Period - Guard) / Cap. Lanes start no call in a
// period's last Guard, so a period that begins with an empty bucket still
// refills its whole cap in time to spend it.
func (p Policy) Interval() time.Duration {
	return (p.Period - Guard(p.Period)) / time.Duration(p.Cap)
}

// Guard is how close to a period's end no call is started: 100ms, or 1% of
// a short period. A call that leaves just before the boundary could land in
// Braze's next period, uncounted there.
func Guard(period time.Duration) time.Duration { return min(100*time.Millisecond, period/100) }
