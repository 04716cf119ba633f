// Package chaos holds the chaos run: real nats-server, brazesim and
// sendid-worker processes, killed and restarted while thousands of jobs flow.
// The run is its test (go test ./internal/chaos -chaos.jobs=2000 -v); it
// prints jobs lost, pairs created twice, calls over any cap and wall time.
package chaos
