// Package worker is sendid's policy: admission turns each job into an
// answer (bad input, duplicate, expired) or an admitted job on its group's
// FIFO, with a deferred notice when it will run after this quota period;
// one lane per app group then takes a pacer token and a ledger slot, fetches
// one job and calls Braze. What a Braze answer means for the job and the
// lane is decided in one place (decide). It declares the small interfaces it
// consumes (Sender) and takes its clock, ledger and pacer from package quota.
package worker
