#!/usr/bin/env bash
# make bench: measures skiff against real Podman and real git and prints one table.
# Builds bin/skiff (unless SKIFF_BIN names a binary) and the demo image when needed, then
# runs BenchmarkSkiff once. Knobs (environment): BENCH_COMMITS (20 commits per latency
# series), BENCH_PODMAN_RUNS (10), BENCH_POLL (2s), BENCH_IDLE (2m), BENCH_IDLE_EMPTY (1m).
# Extra arguments go to `go test` (e.g. -v). Needs root, podman, git (packaging/dev/setup-host.sh).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/packaging/dev/containers.conf}

if [ -z "${SKIFF_BIN:-}" ]; then
  make -s build
  export SKIFF_BIN=$root/bin/skiff
fi
echo "bench: demo image $(fixtures/build-images.sh)" >&2

exec go test -run '^$' -bench '^BenchmarkSkiff$' -benchtime 1x -count 1 -timeout 90m "$@" ./bench
