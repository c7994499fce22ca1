#!/usr/bin/env bash
# bench/net.sh — the Service data plane: a ClusterIP (netplane's nftables rules) against the
# pod IP straight and against a userspace proxy (what an in-agent proxy costs), and the time
# to reprogram many Services. As root.
#
# Topology, in scratch network namespaces removed on exit: a node namespace with a bridge
# (10.42.1.1/24, as netavark makes it), a server pod (10.42.1.2, answers 64 bytes for each
# byte) and a client pod (10.42.1.3) on it. Rows:
#   pod IP           client -> 10.42.1.2:8080 over the bridge
#   ClusterIP (nft)  client -> 10.43.0.10:80, DNATed by netplane's table in the node
#   userspace proxy  client -> 10.42.1.1:9000, a Go proxy in the node copying to the pod
# Columns: new connections per second (dial, one request, close) with their p50/p99, and
# requests per second on kept-open connections with their p50/p99; CONC clients each.
# Then: rendering and applying SERVICES Services of ENDPOINTS endpoints, and ten times as
# many: the first program of the whole table (FIRST), an update where one endpoint turned
# unready (1 EP: the common case) and one where every endpoint moved (ALL EPS); the median
# of ROUNDS, wall time and nft's CPU time (user + system: the kernel's share of the
# transaction runs in nft's system calls), which a busy machine inflates less.
#
# Environment: SECONDS_PER_RUN=3 CONC=4 SERVICES=100 ENDPOINTS=10 ROUNDS=5
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECONDS_PER_RUN:-3}
CONC=${CONC:-4}
SERVICES=${SERVICES:-100}
ENDPOINTS=${ENDPOINTS:-10}
ROUNDS=${ROUNDS:-5}

[[ $(id -u) == 0 ]] || { echo "bench/net.sh: run as root (network namespaces)" >&2; exit 1; }
for t in ip nft nsenter; do command -v $t >/dev/null || { echo "bench/net.sh: $t is missing" >&2; exit 1; }; done

ID=bn$$
NODE=$ID-node SRV=$ID-srv CLI=$ID-cli
WORK=$(mktemp -d /tmp/skiff-bench-net.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	for ns in $CLI $SRV $NODE; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$WORK/netbench" ./bench/net
netns_run() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@"; }
# netns_bg NS CMD...: in the background; nsenter execs CMD in place, so $! is CMD's PID.
netns_bg() { local ns=$1; shift; nsenter --net="/run/netns/$ns" "$@" </dev/null >>"$WORK/bg.log" 2>&1 & PIDS+=($!); }

for ns in $NODE $SRV $CLI; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip -n $NODE link add br0 type bridge
ip -n $NODE addr add 10.42.1.1/24 dev br0
ip -n $NODE link set br0 up
netns_run $NODE sh -c 'echo 1 >/proc/sys/net/ipv4/ip_forward; [ ! -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables'
i=2
for ns in $SRV $CLI; do
	ip link add "${ID}p$i" netns $NODE type veth peer name eth0 netns "$ns"
	ip -n $NODE link set "${ID}p$i" master br0 up
	ip -n "$ns" addr add "10.42.1.$i/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via 10.42.1.1
	i=$((i + 1))
done
# Many short connections from one client: let it reuse ports in TIME_WAIT.
netns_run $CLI sh -c 'echo 1 >/proc/sys/net/ipv4/tcp_tw_reuse; echo "1024 65000" >/proc/sys/net/ipv4/ip_local_port_range'

netns_bg $SRV "$WORK/netbench" serve -addr :8080
netns_bg $NODE "$WORK/netbench" proxy -listen 10.42.1.1:9000 -to 10.42.1.2:8080
netns_run $NODE "$WORK/netbench" program -svc 10.43.0.10:80 -to 10.42.1.2:8080
sleep 0.3

echo "# Service data plane, $(nproc) cores, $CONC clients, ${SECS}s per measurement"
printf "%-22s %10s %9s %9s %10s %9s %9s\n" PATH "CONN/S" "CONN P50" "CONN P99" "REQ/S" "REQ P50" "REQ P99"
netns_run $CLI "$WORK/netbench" load -name "pod IP" -addr 10.42.1.2:8080 -seconds "$SECS" -c "$CONC"
netns_run $CLI "$WORK/netbench" load -name "ClusterIP (nftables)" -addr 10.43.0.10:80 -seconds "$SECS" -c "$CONC"
netns_run $CLI "$WORK/netbench" load -name "userspace proxy" -addr 10.42.1.1:9000 -seconds "$SECS" -c "$CONC"
echo
echo "# reprogramming (median of $ROUNDS; nft -f - in one transaction)"
printf "%-16s %6s %7s %10s %11s %11s %11s %11s %11s %11s\n" SIZE EPS CHAINS RENDER "FIRST" "FIRST CPU" "1 EP" "1 EP CPU" "ALL EPS" "ALL CPU"
netns_run $NODE "$WORK/netbench" reprogram -services "$SERVICES" -endpoints "$ENDPOINTS" -rounds "$ROUNDS"
netns_run $NODE "$WORK/netbench" reprogram -services "$((SERVICES * 10))" -endpoints "$ENDPOINTS" -rounds 3
