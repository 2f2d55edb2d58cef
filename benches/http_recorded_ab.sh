#!/usr/bin/env bash
# Alternated A/B of the recorded HTTP gateway alone, between two builds of the
# `http_bench` example (say, the commit before a change and the one after): wrk with 32,
# then 1 connection, reporting requests/s, p50, and the CPU per request of the bench
# process and of its recording threads (writer, sled I/O, journal) from /proc.
#   DURATION=4s PAIRS=3 benches/http_recorded_ab.sh OLD_HTTP_BENCH NEW_HTTP_BENCH
# Build each side with `cargo build --release -p portcullis-proto-http --example http_bench`
# (in a worktree with its own --target-dir for the old side). Needs wrk.
set -euo pipefail
OLD=$(realpath "$1"); NEW=$(realpath "$2")
DURATION=${DURATION:-4s}
PAIRS=${PAIRS:-3}
TICK_US=$((1000000 / $(getconf CLK_TCK)))
run() { # label runner
  local label=$1 runner=$2 work pid gateway token
  work=$(mktemp -d)
  mkfifo "$work/stdin"
  BENCH_UNRECORDED=0 BENCH_STORE="$work/store" BENCH_WORKERS=1 "$runner" \
    <"$work/stdin" >"$work/out" 2>"$work/err" &
  pid=$!
  exec 9>"$work/stdin"
  for _ in $(seq 100); do grep -q '^store=' "$work/out" 2>/dev/null && break; sleep 0.1; done
  gateway=$(sed -n 's/^gateway=//p' "$work/out")
  token=$(sed -n 's/^token=//p' "$work/out")
  curl -fsS -o /dev/null -H "Authorization: Bearer $token" "http://$gateway/data"
  ticks() { # whole process, recording threads
    local all=0 rec=0 v
    for t in /proc/"$pid"/task/*; do
      v=$(awk '{print $14+$15}' "$t/stat"); all=$((all + v))
      case $(cat "$t/comm") in portcullis-reco*|sled-io*|portcullis-jour*) rec=$((rec + v)) ;; esac
    done
    echo "$all $rec"
  }
  for conns in 32 1; do
    read -r a ra <<<"$(ticks)"
    out=$(wrk -t1 -c"$conns" -d"$DURATION" --latency -H "Authorization: Bearer $token" "http://$gateway/data")
    read -r b rb <<<"$(ticks)"
    n=$(awk '/requests in/ {print $1}' <<<"$out")
    echo "$label c=$conns $(awk '/Requests\/sec/ {print $2}' <<<"$out") req/s" \
      "p50=$(awk '$1=="50%" {print $2}' <<<"$out")" \
      "$(awk -v p=$((b - a)) -v r=$((rb - ra)) -v t="$TICK_US" -v n="$n" \
        'BEGIN { printf "process=%.1fus/req recording=%.1fus/req", p * t / n, r * t / n }')"
  done
  exec 9>&-
  wait "$pid" || true
  rm -rf "$work"
}
for _ in $(seq "$PAIRS"); do
  run old "$OLD"
  run new "$NEW"
done
