// Package deployments holds sendid's deployment files (Dockerfile, compose,
// Kubernetes manifests, systemd unit, example configuration). Its test
// checks them against the code so that they cannot drift from the binary.
package deployments
