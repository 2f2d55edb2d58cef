#!/usr/bin/env bash
# Compares 1 KiB GET responses: direct to the upstream, through an nginx reverse proxy, and
# through the Portcullis HTTP gateway (JWT identity, HTTP policy and recording on), and
# the same gateway with a sink that drops every event ("unrecorded": what recording costs;
# BENCH_UNRECORDED=0 leaves it out).
# wrk with 1 and 32 connections, runs alternated, throughput ratios, p50/p99 latency, and the
# CPU time each request cost the proxy (gateway threads or nginx) and the upstream.
# BENCH_WORKERS sets the gateway's worker threads (default 1, like the one nginx worker);
# BENCH_WRITER_PRIORITY=idle runs the recorder's writer at idle priority.
# BENCH_RECORD_BODY_BYTES sets the gateway's record_body_bytes (default 4096: the whole 1 KiB
# response is kept in the record; 0 keeps no body excerpts).
#
#   benches/http_compare.sh            # DURATION=10s ROUNDS=2 by default
#
# Needs wrk and nginx (apt-get install -y wrk nginx-light). Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)"; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is not installed (apt-get install -y nginx-light)"; exit 1; }

cargo build --release -q -p portcullis-proto-http --example http_bench
RUNNER=target/release/examples/http_bench

WORK=$(mktemp -d)
mkfifo "$WORK/stdin"
BENCH_UNRECORDED=${BENCH_UNRECORDED:-1} BENCH_STORE="$WORK/store" BENCH_WORKERS=${BENCH_WORKERS:-1} "$RUNNER" <"$WORK/stdin" >"$WORK/runner.out" 2>"$WORK/runner.err" &
RUNNER_PID=$!
exec 9>"$WORK/stdin"
NGINX_PID=""
cleanup() {
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null || true
  exec 9>&- || true
  wait "$RUNNER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^store=' "$WORK/runner.out" 2>/dev/null && break; sleep 0.1; done
UPSTREAM=$(sed -n 's/^upstream=//p' "$WORK/runner.out")
GATEWAY=$(sed -n 's/^gateway=//p' "$WORK/runner.out")
TOKEN=$(sed -n 's/^token=//p' "$WORK/runner.out")
UNRECORDED=$(sed -n 's/^unrecorded=//p' "$WORK/runner.out")

NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
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
  upstream api { server $UPSTREAM; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
# 9>&-: nginx must not hold the runner's stdin open, or the runner never sees it close.
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 9>&- &
NGINX_PID=$!
sleep 0.5

# CPU time (clock ticks) used so far: "proxy upstream". The upstream is the runner's thread
# named after the binary; every other runner thread (gateway workers, recorder, store) counts
# as the proxy, and so does nginx. Only the path under test is busy during a run.
TICK_US=$((1000000 / $(getconf CLK_TCK)))
cpu_ticks() {
  local proxy=0 upstream=0 t comm ticks
  for t in /proc/"$RUNNER_PID"/task/* /proc/"$NGINX_PID"/task/*; do
    comm=$(cat "$t/comm" 2>/dev/null) || continue
    ticks=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null) || continue
    if [ "$comm" = http_bench ]; then upstream=$((upstream + ticks)); else proxy=$((proxy + ticks)); fi
  done
  echo "$proxy $upstream"
}

run() { # name conns url [header]
  local name=$1 conns=$2 url=$3 threads=1
  [ "$conns" -gt 1 ] && threads=2
  local out before after
  before=$(cpu_ticks)
  if [ -n "${4:-}" ]; then
    out=$(wrk -t"$threads" -c"$conns" -d"$DURATION" --latency -H "$4" "$url")
  else
    out=$(wrk -t"$threads" -c"$conns" -d"$DURATION" --latency "$url")
  fi
  after=$(cpu_ticks)
  local rps p50 p99 non2xx reqs cpu
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  # CPU per request in microseconds: proxy (gateway or nginx) and upstream.
  cpu=$(awk -v b="$before" -v a="$after" -v r="$reqs" -v t="$TICK_US" 'BEGIN {
    split(b, x, " "); split(a, y, " ");
    printf "%.1f %.1f", (y[1] - x[1]) * t / r, (y[2] - x[2]) * t / r }')
  printf '%-10s c=%-3s rps=%-10s p50=%-9s p99=%-9s cpu/req: proxy=%-5s upstream=%-5s us %s\n' \
    "$name" "$conns" "$rps" "$p50" "$p99" ${cpu} "${non2xx:+non2xx=$non2xx}"
  echo "$name $conns $rps ${cpu}" >>"$WORK/results"
}

# Sanity: each path answers 200.
curl -fsS -o /dev/null "http://$UPSTREAM/data"
curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/data"
curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "http://$GATEWAY/data"

echo "machine: $(nproc) cores (shared); duration $DURATION per run, $ROUNDS alternating rounds"
for conns in 1 32; do
  for round in $(seq "$ROUNDS"); do
    run direct "$conns" "http://$UPSTREAM/data"
    run nginx "$conns" "http://127.0.0.1:$NGINX_PORT/data"
    run portcullis "$conns" "http://$GATEWAY/data" "Authorization: Bearer $TOKEN"
    if [ -n "$UNRECORDED" ]; then
      run unrecorded "$conns" "http://$UNRECORDED/data" "Authorization: Bearer $TOKEN"
    fi
  done
done

echo "--- mean requests/s, ratio to direct, and CPU per request (proxy, upstream)"
awk '{ k=$1" "$2; sum[k]+=$3; px[k]+=$4; up[k]+=$5; n[k]++ }
     END {
       split("1 32", cs, " ");
       for (i in cs) { c=cs[i]; d=sum["direct "c]/n["direct "c];
         for (k in sum) { split(k, p, " "); if (p[2]==c)
           printf "%-10s c=%-3s %10.0f req/s  %.2fx of direct  proxy %5.1f us/req  upstream %5.1f us/req\n",
             p[1], c, sum[k]/n[k], (sum[k]/n[k])/d, px[k]/n[k], up[k]/n[k] } } }' \
  "$WORK/results" | sort -k2,2 -k1,1
