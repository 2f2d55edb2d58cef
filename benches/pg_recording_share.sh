#!/usr/bin/env bash
# What recording costs in CPU per transaction under `pgbench -S` with 16 clients, against the
# same gateway with nothing recorded (the bench-discard-store build, see benches/lib.sh):
# runs pg_compare's `portcullis` and `unrecorded` paths alone, alternately, RUNS times each,
# and over a window in the middle of each run reads from /proc the CPU time of the gateway's
# threads (writer portcullis-reco*, sled's sled-io*, the journal's portcullis-jour*, and the
# rest: the connections' tokio workers) and of the whole machine (user, nice, system, irq,
# softirq). On a CPU-bound machine the throughput cost of recording is about the extra CPU
# per transaction as a share of the machine's, and this share is far steadier from run to
# run than the ratio of two throughputs.
#   SECS=20 WIN=12 RUNS=3 benches/pg_recording_share.sh
# PORTCULLIS_BIN / PORTCULLIS_UNRECORDED_BIN measure other builds (nothing is built then).
# Needs what benches/pg_compare.sh needs (pgbench, PostgreSQL server binaries).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
SECS=${SECS:-20}
WIN=${WIN:-12}
RUNS=${RUNS:-3}
[ -n "${PORTCULLIS_UNRECORDED_BIN:-}" ] || build_unrecorded
[ -n "${PORTCULLIS_BIN:-}" ] || { build_recorded; PORTCULLIS_BIN="$PWD/target/release/portcullis"; }
export PORTCULLIS_BIN PORTCULLIS_UNRECORDED_BIN
compare=${PG_COMPARE:-target/release/examples/pg_compare}
[ -x "$compare" ] || build_recorded
tick=$(getconf CLK_TCK)
snap() { # writer sled-io journal other machine-busy, in clock ticks
  local pid=$1 w=0 s=0 j=0 o=0 c v
  for t in /proc/"$pid"/task/*; do
    c=$(cat "$t/comm"); v=$(awk '{print $14+$15}' "$t/stat")
    case $c in portcullis-reco*) w=$((w + v)) ;; sled-io*) s=$((s + v)) ;;
      portcullis-jour*) j=$((j + v)) ;; *) o=$((o + v)) ;; esac
  done
  echo "$w $s $j $o $(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)"
}
results=$(mktemp)
for run in $(seq "$RUNS"); do
  for path in portcullis unrecorded; do
    log=$(mktemp)
    BENCH_PATHS=$path BENCH_SCENARIOS=2 BENCH_SECONDS="$SECS" BENCH_ROUNDS=1 "$compare" >"$log" 2>&1 &
    bench=$!
    sleep $(( (SECS - WIN) / 2 + 2 ))
    if [ $path = portcullis ]; then bin=$PORTCULLIS_BIN; else bin=$PORTCULLIS_UNRECORDED_BIN; fi
    pid=$(gateway_pid "$bin")
    a=$(snap "$pid"); sleep "$WIN"; b=$(snap "$pid")
    wait "$bench" || { cat "$log" >&2; exit 1; }
    tps=$(grep -o '[0-9]* tps' "$log" | head -1 | awk '{print $1}')
    rm -f "$log"
    echo "$run $path $tps $a $b" >>"$results"
  done
done
python3 - "$WIN" "$tick" "$results" <<'PY'
import statistics, sys
win, tick = float(sys.argv[1]), float(sys.argv[2])
runs = {}
for line in open(sys.argv[3]):
    f = line.split()
    tps = float(f[2]); a = list(map(int, f[3:8])); b = list(map(int, f[8:13]))
    # Per transaction, in microseconds: writer, sled I/O, journal, other gateway threads, machine.
    runs.setdefault(f[0], {})[f[1]] = [tps] + [(y - x) / tick * 1e6 / (tps * win) for x, y in zip(a, b)]
shares, gateway_shares = [], []
for run, p in sorted(runs.items()):
    r, u = p["portcullis"], p["unrecorded"]
    for name, v in (("recorded", r), ("unrecorded", u)):
        print(f"run {run} {name:10s} {v[0]:7.0f} tps; CPU per transaction: writer {v[1]:.2f} us, "
              f"sled I/O {v[2]:.2f}, journal {v[3]:.2f}, other gateway threads {v[4]:.2f}, "
              f"gateway {sum(v[1:5]):.2f}, machine {v[5]:.2f}")
    store = (r[1] + r[2] + r[3]) - (u[1] + u[2] + u[3])
    gateway = sum(r[1:5]) - sum(u[1:5])
    shares.append(100 * store / u[5]); gateway_shares.append(100 * gateway / u[5])
    print(f"run {run}: recording threads +{store:.2f} us per transaction = {shares[-1]:.1f}% of the "
          f"unrecorded machine's CPU per transaction; whole gateway {gateway:+.2f} us = "
          f"{gateway_shares[-1]:.1f}%; throughput recorded/unrecorded {r[0] / u[0]:.3f}")
print(f"median over {len(shares)} runs: recording threads {statistics.median(shares):.1f}%, "
      f"whole gateway {statistics.median(gateway_shares):.1f}% of the machine's CPU per transaction")
PY
rm -f "$results"
