#!/usr/bin/env bash
# PostgreSQL: direct vs PgBouncer (transaction pooling) vs Portcullis (recording on),
# alternating runs, ratios printed. Needs pgbench, psql, pgbouncer and PostgreSQL
# server binaries (see .ci/run for the Debian packages).
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_DURABILITY=batched benches/pg_compare.sh
# A second gateway built with the bench-discard-store feature (see build_unrecorded in
# benches/lib.sh) runs the same policy with nothing recorded: the difference is the cost of
# recording. BENCH_UNRECORDED=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
if [ "${BENCH_UNRECORDED:-1}" != 0 ]; then
  build_unrecorded
fi
build_recorded
exec target/release/examples/pg_compare "$@"
