#!/usr/bin/env bash
# CPU the recorder's threads spend per recorded event under `pgbench -S` with 16 clients:
# runs the `portcullis` path of pg_compare alone and reads, from /proc, the CPU time of the
# gateway's writer thread (portcullis-reco*), sled's I/O threads (sled-io*) and the journal's
# flusher (portcullis-jour*) over a window in the middle of the run. Two events per statement
# (`command`, `command_result`), stored as one or two records: batched recording folds a
# result into its command's record when both reach the writer in the same write.
#   SECS=24 WIN=12 RUNS=2 benches/pg_recording_cpu.sh
# PORTCULLIS_BIN=PATH measures another build (pg_compare runs it). benches/pg_recording_share.sh
# compares the same counters with the unrecorded gateway's, per transaction.
# Needs what benches/pg_compare.sh needs (pgbench, PostgreSQL server binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${SECS:-24}
WIN=${WIN:-12}
RUNS=${RUNS:-2}
build_recorded
tick=$(getconf CLK_TCK)
snap() { # writer sled-io journal whole-process, in clock ticks
  local pid=$1 w=0 s=0 j=0 all=0 c v
  for t in /proc/"$pid"/task/*; do
    c=$(cat "$t/comm"); v=$(awk '{print $14+$15}' "$t/stat")
    all=$((all + v))
    case $c in portcullis-reco*) w=$((w + v)) ;; sled-io*) s=$((s + v)) ;; portcullis-jour*) j=$((j + v)) ;; esac
  done
  echo "$w $s $j $all"
}
for run in $(seq "$RUNS"); do
  log=$(mktemp)
  BENCH_PATHS=portcullis BENCH_SCENARIOS=2 BENCH_SECONDS="$SECS" BENCH_ROUNDS=1 \
    target/release/examples/pg_compare >"$log" 2>&1 &
  bench=$!
  sleep $(( (SECS - WIN) / 2 ))
  pid=$(gateway_pid "${PORTCULLIS_BIN:-}")
  a=$(snap "$pid"); sleep "$WIN"; b=$(snap "$pid")
  wait "$bench"
  tps=$(grep -o '[0-9]* tps' "$log" | awk '{print $1}')
  rm -f "$log"
  python3 - "$run" "$tps" "$WIN" "$tick" $a $b <<'PY'
import sys
run, tps, win, tick = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
a = list(map(int, sys.argv[5:9])); b = list(map(int, sys.argv[9:13]))
events = tps * 2 * win
d = [(y - x) / tick * 1e6 / events for x, y in zip(a, b)]
print(f"run {run}: {tps:.0f} tps; CPU per event: writer {d[0]:.2f} us, sled I/O {d[1]:.2f} us, "
      f"journal {d[2]:.2f} us, recording total {d[0] + d[1] + d[2]:.2f} us; whole gateway {d[3]:.2f} us; "
      f"writer {100 * d[0] / d[3]:.1f}% of the gateway's CPU")
PY
done
