#!/usr/bin/env bash
# bench/dns.sh — dnsd against CoreDNS, same records, same queries, same run, on loopback.
#
# dnsd serves a synthetic cluster (bench/dns: SERVICES Services, PODS pods, a quarter of the
# Services headless with StatefulSet-style pods); CoreDNS serves the very same records,
# dumped by dnsd as a zone file, with its file plugin. dnsperf sends the same mix of cluster
# names to both (A and SRV, all hits; headless SRV answers carry 4 targets):
#   - throughput: ROUNDS interleaved runs of SECONDS each at saturation (dnsperf -q 100),
#     the median QPS and average latency of each server;
#   - latency: RATE queries/s for LATENCY_SECONDS, every query's latency (dnsperf -v), p50
#     and p99 — latency at a steady load, not queueing behind a saturated server.
# CoreDNS is built once with `go install` into CACHE (reused by later runs); nothing of it
# is copied into the project.
#
# Environment: SERVICES=500 PODS=2000 SECONDS_PER_RUN=10 ROUNDS=3 RATE=5000 LATENCY_SECONDS=5
#              COREDNS_VERSION=latest CACHE=/tmp/skiff-bench-coredns
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=${SERVICES:-500}
PODS=${PODS:-2000}
SECS=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-5000}
LATENCY_SECONDS=${LATENCY_SECONDS:-5}
COREDNS_VERSION=${COREDNS_VERSION:-latest}
CACHE=${CACHE:-/tmp/skiff-bench-coredns}
DNSD_PORT=${DNSD_PORT:-15353}
COREDNS_PORT=${COREDNS_PORT:-15354}

need() { command -v "$1" >/dev/null || { echo "bench/dns.sh: $1 is missing (apt-get install $2)" >&2; exit 1; }; }
need dnsperf dnsperf
need dig bind9-dnsutils

if [[ ! -x $CACHE/bin/coredns ]]; then
	echo "building CoreDNS $COREDNS_VERSION into $CACHE/bin (once; about 5 minutes)..." >&2
	mkdir -p "$CACHE/bin"
	(cd "$CACHE" && GOFLAGS= GOBIN="$CACHE/bin" go install "github.com/coredns/coredns@$COREDNS_VERSION")
fi

WORK=$(mktemp -d /tmp/skiff-bench-dns.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$WORK/dnsbench" ./bench/dns
"$WORK/dnsbench" -addr "127.0.0.1:$DNSD_PORT" -dir "$WORK" -services "$SERVICES" -pods "$PODS" >"$WORK/dnsd.log" 2>&1 &
PIDS+=($!)

# wait_answer PORT: until the server answers a cluster name (30 s at most).
wait_answer() {
	local deadline=$((SECONDS + 30))
	until dig +tries=1 +time=1 +short @127.0.0.1 -p "$1" svc-0.ns-0.svc.cluster.local A 2>/dev/null | grep -q .; do
		if ((SECONDS > deadline)); then
			echo "bench/dns.sh: no answer on port $1" >&2
			cat "$WORK"/*.log >&2
			exit 1
		fi
		sleep 0.2
	done
}
wait_answer "$DNSD_PORT"

cat >"$WORK/Corefile" <<EOF
cluster.local:$COREDNS_PORT {
    bind 127.0.0.1
    file $WORK/cluster.local.zone
}
EOF
"$CACHE/bin/coredns" -conf "$WORK/Corefile" >"$WORK/coredns.log" 2>&1 &
PIDS+=($!)
wait_answer "$COREDNS_PORT"

# Both must give the same answers before their speed means anything.
while read -r name type; do
	a=$(dig +short @127.0.0.1 -p "$DNSD_PORT" "$name" "$type" | sort)
	b=$(dig +short @127.0.0.1 -p "$COREDNS_PORT" "$name" "$type" | sort)
	if [[ "$a" != "$b" ]]; then
		echo "bench/dns.sh: $name $type differs: dnsd [$a] coredns [$b]" >&2
		exit 1
	fi
done < <(head -n 12 "$WORK/queries.txt")

# throughput PORT → "qps avg_ms lost"
throughput() {
	dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries.txt" -l "$SECS" -c 4 -q 100 2>&1 |
		awk '/Queries lost:/ {lost=$3} /Queries per second:/ {qps=$4} /Average Latency/ {avg=$4*1000}
		     END {printf "%.0f %.3f %s\n", qps, avg, lost}'
}
# latency PORT → "avg_ms p50_ms p99_ms lost" (dnsperf -v: "> NOERROR name type seconds" per
# answer, "> T name type" per timeout, which counts as lost)
latency() {
	dnsperf -s 127.0.0.1 -p "$1" -d "$WORK/queries.txt" -l "$LATENCY_SECONDS" -c 4 -Q "$RATE" -v 2>/dev/null >"$WORK/lat.txt" || true
	awk '/^> / && $NF ~ /^[0-9.]+$/ {print $NF*1000}' "$WORK/lat.txt" | sort -n | awk -v lost="$(awk '/Queries lost:/ {print $3}' "$WORK/lat.txt")" \
		'{v[NR]=$1; s+=$1} END {if (NR==0) {print "0 0 0 " lost; exit} printf "%.3f %.3f %.3f %s\n", s/NR, v[int(NR*0.5)+1], v[int(NR*0.99)], lost}'
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

declare -A QPS AVG LOST
for round in $(seq "$ROUNDS"); do
	for srv in dnsd coredns; do
		port=$DNSD_PORT
		[[ $srv == coredns ]] && port=$COREDNS_PORT
		read -r qps avg lost < <(throughput "$port")
		QPS[$srv]+="$qps "
		AVG[$srv]+="$avg "
		LOST[$srv]=$(( ${LOST[$srv]:-0} + lost ))
		echo "round $round $srv: $qps qps, avg $avg ms" >&2
	done
done
read -r dl_avg dl_p50 dl_p99 dl_lost < <(latency "$DNSD_PORT")
read -r cl_avg cl_p50 cl_p99 cl_lost < <(latency "$COREDNS_PORT")

d_qps=$(tr ' ' '\n' <<<"${QPS[dnsd]}" | grep . | median)
c_qps=$(tr ' ' '\n' <<<"${QPS[coredns]}" | grep . | median)
d_avg=$(tr ' ' '\n' <<<"${AVG[dnsd]}" | grep . | median)
c_avg=$(tr ' ' '\n' <<<"${AVG[coredns]}" | grep . | median)
coredns_version=$("$CACHE/bin/coredns" -version 2>/dev/null | head -1)

echo
echo "cluster names (A/SRV hits), $SERVICES Services / $PODS pods, $(wc -l <"$WORK/queries.txt") queries in the mix, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
echo "throughput: median of $ROUNDS × ${SECS}s at saturation (dnsperf -c 4 -q 100); latency: ${LATENCY_SECONDS}s at $RATE qps"
printf '%-22s %10s %10s %6s | %9s %9s %9s %6s\n' server QPS "avg ms" lost "avg ms" "p50 ms" "p99 ms" lost
printf '%-22s %10s %10s %6s | %9s %9s %9s %6s\n' "dnsd" "$d_qps" "$d_avg" "${LOST[dnsd]}" "$dl_avg" "$dl_p50" "$dl_p99" "$dl_lost"
printf '%-22s %10s %10s %6s | %9s %9s %9s %6s\n' "${coredns_version:-CoreDNS} file" "$c_qps" "$c_avg" "${LOST[coredns]}" "$cl_avg" "$cl_p50" "$cl_p99" "$cl_lost"
ratio=$(awk -v a="$d_qps" -v b="$c_qps" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
echo "dnsd / CoreDNS QPS: ${ratio}x (target ≥ 1.5x); dnsd p99 at $RATE qps: $dl_p99 ms (target < 2 ms)"
