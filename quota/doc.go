// Package quota owns the arithmetic of the daily cap: quota periods in an
// app group's timezone (DST days included), the Ledger that is the authority
// for the hard cap (in memory, or shared by every replica through a JetStream
// KV bucket with compare-and-swap), the Pacer that spreads calls with
// golang.org/x/time/rate, and the Forecast of when a backlog position will be
// called. Everything that depends on "now" takes a Clock.
package quota
