#!/usr/bin/env bash
# Where the recorder's threads spend their CPU under `pgbench -S` with 16 clients: runs the
# `portcullis` path of pg_compare alone and, in the middle of the run, samples the gateway's
# writer (portcullis-reco*), sled's I/O threads (sled-io*) and the journal's flusher
# (portcullis-jour*) with `perf record --call-graph dwarf`, then prints the inclusive shares
# of the functions above PCT percent.
#   SECS=20 WIN=6 PCT=2.5 benches/pg_recording_profile.sh [OUT.data]
# PORTCULLIS_BIN=PATH profiles another build. Needs perf and what benches/pg_compare.sh needs.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${SECS:-20}
WIN=${WIN:-6}
PCT=${PCT:-2.5}
out=${1:-$(mktemp --suffix=.data)}
build_recorded
log=$(mktemp)
BENCH_PATHS=portcullis BENCH_SCENARIOS=2 BENCH_SECONDS="$SECS" BENCH_ROUNDS=1 \
  target/release/examples/pg_compare >"$log" 2>&1 &
bench=$!
sleep $(( (SECS - WIN) / 2 ))
pid=$(gateway_pid "${PORTCULLIS_BIN:-}")
tids=()
for t in /proc/"$pid"/task/*; do
  case $(cat "$t/comm") in portcullis-reco*|sled-io*|portcullis-jour*) tids+=("$(basename "$t")") ;; esac
done
tid_list=$(IFS=,; echo "${tids[*]}")
perf record -q -o "$out" --call-graph dwarf,16384 -t "$tid_list" -- sleep "$WIN" >/dev/null 2>&1
wait "$bench"
grep -o '[0-9]* tps' "$log" | head -1
rm -f "$log"
perf report -i "$out" --children --sort sym --stdio -g none --percent-limit "$PCT" 2>/dev/null |
  grep '%' | grep -v 'inlined\|std::\|core::\|clone3\|start_thread\|__rust'
echo "profile: $out"
