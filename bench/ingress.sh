#!/usr/bin/env bash
# bench/ingress.sh — the same backend through skiff's ingress, nginx and Caddy, in one run:
# h2load (HTTPS, HTTP/2) and wrk (HTTP/1.1 keep-alive), req/s and p99 for each, and ratios.
#
# Needs: go, nginx, wrk, h2load (apt-get install nginx wrk nghttp2-client), openssl, taskset.
# Caddy is built once with `go install` into $CADDY_CACHE (a temp dir, never committed).
#
# Fairness: each proxy runs with the same number of workers (nginx worker_processes,
# GOMAXPROCS for skiff and Caddy) pinned to the same cores (PROXY_CPUS); the backend and the
# load generator share the other cores (LOAD_CPUS). Rounds are interleaved and the median
# of each is reported, since the box is shared.
#
#   ROUNDS=3 DURATION=10 bench/ingress.sh
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}       # seconds per measurement
WARMUP=${WARMUP:-2}            # seconds
H2_CONNS=${H2_CONNS:-32}       # h2load connections
H2_STREAMS=${H2_STREAMS:-10}   # concurrent streams per connection
WRK_CONNS=${WRK_CONNS:-64}
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
	PROXY_CPUS=${PROXY_CPUS:-0}
	LOAD_CPUS=${LOAD_CPUS:-1-$((NCPU - 1))}
else
	PROXY_CPUS=${PROXY_CPUS:-0}
	LOAD_CPUS=${LOAD_CPUS:-0}
fi
WORKERS=${WORKERS:-$(taskset -c "$PROXY_CPUS" nproc)}
CADDY_CACHE=${CADDY_CACHE:-/tmp/skiff-bench-caddy}
CADDY_VERSION=${CADDY_VERSION:-latest}
PROFILE=${PROFILE:-}           # set to a path to write skiff's CPU profile

for tool in go nginx wrk h2load openssl taskset; do
	command -v "$tool" >/dev/null || { echo "bench/ingress.sh: $tool not found (apt-get install nginx wrk nghttp2-client openssl util-linux)" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/skiff-ingress-bench.XXXXXX)
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

BACKEND=127.0.0.1:18080
declare -A HTTPS_PORT=([skiff]=48443 [nginx]=38443 [caddy]=28443)
declare -A HTTP_PORT=([skiff]=48081 [nginx]=38081 [caddy]=28081)
SERVERS=(skiff nginx caddy)

echo "building..." >&2
(cd "$ROOT" && go build -o "$WORK/bin/" ./bench/ingress/backend ./bench/ingress/skiffingress)
if [ ! -x "$CADDY_CACHE/bin/caddy" ]; then
	echo "installing Caddy into $CADDY_CACHE (a few minutes, once)..." >&2
	mkdir -p "$CADDY_CACHE/bin"
	(cd "$WORK" && GOBIN="$CADDY_CACHE/bin" GOFLAGS=-mod=mod go install "github.com/caddyserver/caddy/v2/cmd/caddy@$CADDY_VERSION")
fi
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=DNS:localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

declare -A PID
start() { # name cpus cmd...
	local name=$1 cpus=$2
	shift 2
	taskset -c "$cpus" "$@" >"$WORK/$name.log" 2>&1 &
	PIDS+=($!)
	PID[$name]=$!
}

# cpu_ticks pid → user+system clock ticks of the process and its children (nginx workers).
cpu_ticks() {
	local total=0 p
	for p in $1 $(ps -o pid= --ppid "$1" 2>/dev/null); do
		total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$total"
}
HZ=$(getconf CLK_TCK)

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "nothing listens on port $1" >&2
	return 1
}

# The backend: on the load cores, as many threads as those cores.
GOMAXPROCS=$(taskset -c "$LOAD_CPUS" nproc) start backend "$LOAD_CPUS" "$WORK/bin/backend" -addr "$BACKEND"

# skiff
profile_args=()
[ -n "$PROFILE" ] && profile_args=(-cpuprofile "$PROFILE")
GOMAXPROCS=$WORKERS start skiff "$PROXY_CPUS" "$WORK/bin/skiffingress" -backend "$BACKEND" \
	-http "127.0.0.1:${HTTP_PORT[skiff]}" -https "127.0.0.1:${HTTPS_PORT[skiff]}" \
	-cert "$WORK/cert.pem" -key "$WORK/key.pem" "${profile_args[@]}"

# nginx: the Debian package, an equivalent configuration.
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $WORKERS;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	keepalive_requests 1000000;
	upstream backend {
		server $BACKEND;
		keepalive 256;
		keepalive_requests 1000000;
	}
	server {
		listen 127.0.0.1:${HTTPS_PORT[nginx]} ssl http2;
		listen 127.0.0.1:${HTTP_PORT[nginx]};
		server_name localhost plain.localhost;
		ssl_certificate $WORK/cert.pem;
		ssl_certificate_key $WORK/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
		ssl_session_cache shared:SSL:10m;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$host;
			proxy_set_header X-Forwarded-For \$remote_addr;
			proxy_set_header X-Forwarded-Proto \$scheme;
			proxy_set_header X-Forwarded-Host \$host;
		}
	}
}
EOF
start nginx "$PROXY_CPUS" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"

# Plain HTTP goes to plain.localhost (no TLS, so no redirect), HTTPS to localhost.
# Caddy: reverse_proxy keeps connections to the backend alive and sets X-Forwarded-*.
mkdir -p "$WORK/caddy"
cat >"$WORK/caddy/Caddyfile" <<EOF
{
	admin off
	auto_https off
	persist_config off
	servers {
		protocols h1 h2
	}
}
https://localhost:${HTTPS_PORT[caddy]} {
	bind 127.0.0.1
	tls $WORK/cert.pem $WORK/key.pem
	reverse_proxy $BACKEND
}
http://plain.localhost:${HTTP_PORT[caddy]} {
	bind 127.0.0.1
	reverse_proxy $BACKEND
}
EOF
HOME="$WORK/caddy" XDG_DATA_HOME="$WORK/caddy" XDG_CONFIG_HOME="$WORK/caddy" GOMAXPROCS=$WORKERS \
	start caddy "$PROXY_CPUS" "$CADDY_CACHE/bin/caddy" run --config "$WORK/caddy/Caddyfile" --adapter caddyfile

wait_port 18080
for s in "${SERVERS[@]}"; do wait_port "${HTTPS_PORT[$s]}"; wait_port "${HTTP_PORT[$s]}"; done

# Check each path answers the backend's body before measuring.
for s in "${SERVERS[@]}"; do
	for url in "https://localhost:${HTTPS_PORT[$s]}/" "http://plain.localhost:${HTTP_PORT[$s]}/"; do
		got=$(curl -sk --http2 --resolve "plain.localhost:${HTTP_PORT[$s]}:127.0.0.1" "$url" 2>/dev/null || true)
		case "$got" in
		"hello from the benchmark backend"*) ;;
		*) echo "$s: $url answered '$got'" >&2; cat "$WORK/$s.log" >&2; exit 1 ;;
		esac
	done
done

# run_h2load server round → "req/s p99ms failed cpu-us/req"
run_h2load() {
	local log="$WORK/h2load-$1-$2.log"
	local out t0 t1
	t0=$(cpu_ticks "${PID[$1]}")
	out=$(taskset -c "$LOAD_CPUS" h2load -t 1 -c "$H2_CONNS" -m "$H2_STREAMS" -D "$DURATION" --warm-up-time="$WARMUP" \
		--log-file="$log" "https://localhost:${HTTPS_PORT[$1]}/" 2>&1)
	t1=$(cpu_ticks "${PID[$1]}")
	local rps failed p99 n
	rps=$(echo "$out" | awk '/^finished in/ {gsub(",", "", $4); print $4}')
	failed=$(echo "$out" | awk '/^requests:/ {print $10 + $12}')
	n=$(echo "$out" | awk '/^status codes:/ {print $3}') # every request, warm-up included
	p99=$(awk '{print $3}' "$log" | sort -n | awk '{a[NR]=$1} END {if (NR) printf "%.2f", a[int(NR*0.99)]/1000; else print "nan"}')
	echo "$rps $p99 $failed $(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$HZ" 'BEGIN {if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "nan"}')"
}

# run_wrk server round → "req/s p99ms failed cpu-us/req"
run_wrk() {
	local out t0 t1
	t0=$(cpu_ticks "${PID[$1]}")
	out=$(taskset -c "$LOAD_CPUS" wrk -t 1 -c "$WRK_CONNS" -d "$((DURATION + WARMUP))s" --latency \
		-H "Host: plain.localhost:${HTTP_PORT[$1]}" "http://127.0.0.1:${HTTP_PORT[$1]}/" 2>&1)
	t1=$(cpu_ticks "${PID[$1]}")
	local rps p99 failed n
	rps=$(echo "$out" | awk '/^Requests\/sec:/ {print $2}')
	p99=$(echo "$out" | awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; printf "%.2f", v}')
	failed=$(echo "$out" | awk '/Non-2xx/ {n+=$NF} /Socket errors/ {gsub(",", ""); n+=$4+$6+$8+$10} END {print n+0}')
	n=$(echo "$out" | awk '/requests in/ {print $1}')
	echo "$rps $p99 $failed $(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$HZ" 'BEGIN {if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "nan"}')"
}

declare -A RPS P99 FAILED CPU
for round in $(seq "$ROUNDS"); do
	for tool in h2load wrk; do
		for s in "${SERVERS[@]}"; do
			read -r rps p99 failed cpu < <("run_$tool" "$s" "$round")
			RPS[$tool,$s]+="$rps "
			P99[$tool,$s]+="$p99 "
			CPU[$tool,$s]+="$cpu "
			FAILED[$tool,$s]=$(( ${FAILED[$tool,$s]:-0} + ${failed:-0} ))
			echo "round $round $tool $s: $rps req/s, p99 $p99 ms, $failed failed, $cpu CPU-us/req" >&2
		done
	done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo
caddy_version=$(go version -m "$CADDY_CACHE/bin/caddy" | awk '$1 == "mod" && $2 == "github.com/caddyserver/caddy/v2" {print $3}')
echo "skiff ingress ($(go version | awk '{print $3}')) vs nginx $(nginx -v 2>&1 | sed 's|.*/||') and Caddy ${caddy_version:-?}"
echo "$NCPU cores; proxies pinned to CPU $PROXY_CPUS with $WORKERS worker(s) each; backend and load generator on CPU $LOAD_CPUS"
echo "median of $ROUNDS interleaved rounds of ${DURATION}s (after ${WARMUP}s warm-up); h2load -c $H2_CONNS -m $H2_STREAMS over TLS; wrk -c $WRK_CONNS keep-alive"
echo
printf "%-20s %-6s %9s %12s %8s %7s %12s %16s\n" "load" "proxy" "req/s" "skiff/proxy" "p99 ms" "failed" "CPU us/req" "proxy/skiff CPU"
for tool in h2load wrk; do
	label="h2load (HTTPS, h2)"
	[ "$tool" = wrk ] && label="wrk (HTTP/1.1)"
	skiff_rps=$(echo "${RPS[$tool,skiff]}" | median)
	skiff_cpu=$(echo "${CPU[$tool,skiff]}" | median)
	for s in "${SERVERS[@]}"; do
		rps=$(echo "${RPS[$tool,$s]}" | median)
		p99=$(echo "${P99[$tool,$s]}" | median)
		cpu=$(echo "${CPU[$tool,$s]}" | median)
		ratio="" cratio=""
		if [ "$s" != skiff ]; then
			ratio=$(awk -v a="$skiff_rps" -v b="$rps" 'BEGIN {if (b > 0) printf "%.2fx", a/b}')
			cratio=$(awk -v a="$cpu" -v b="$skiff_cpu" 'BEGIN {if (b > 0) printf "%.2fx", a/b}')
		fi
		printf "%-20s %-6s %9.0f %12s %8s %7s %12s %16s\n" "$label" "$s" "$rps" "$ratio" "$p99" "${FAILED[$tool,$s]}" "$cpu" "$cratio"
		label=""
	done
done
echo
echo "targets: skiff >= 1.0x nginx, >= 1.2x Caddy (req/s)."
echo "CPU us/req is the proxy's own user+system CPU time per request (all its processes), which"
echo "other load on a shared box disturbs far less than req/s; proxy/skiff CPU > 1 means skiff is cheaper."
