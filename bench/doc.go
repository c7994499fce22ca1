// Package bench measures skiff against real Podman and real git and prints a table: commit →
// all pods Running+Ready latency (webhook and poll) beside Podman's own start time for the
// same pods, idle poll CPU, agent RSS and idle disk writes.
//
// Run it with `make bench` (bench/run.sh): it is a Go benchmark run once
// (-benchtime 1x), so `go test ./...` compiles it but never runs it.
package bench
