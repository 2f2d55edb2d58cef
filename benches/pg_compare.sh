#!/usr/bin/env bash
# PostgreSQL: direct vs PgBouncer (transaction pooling) vs Portcullis (recording on),
# alternating runs, ratios printed. Needs pgbench, psql, pgbouncer and PostgreSQL
# server binaries (see .ci/run for the Debian packages).
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_DURABILITY=batched benches/pg_compare.sh
# A second gateway built with the bench-discard-store feature (in its own target directory,
# target/bench-unrecorded, so that neither build invalidates the other and a repeated run
# rebuilds nothing; copied to target/release/portcullis-unrecorded) runs the same policy
# with nothing recorded: the difference is the cost of recording. BENCH_UNRECORDED=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BENCH_UNRECORDED:-1}" != 0 ]; then
  cargo build --release -q -p portcullis --bin portcullis --features bench-discard-store \
    --target-dir target/bench-unrecorded
  mkdir -p target/release
  cp target/bench-unrecorded/release/portcullis target/release/portcullis-unrecorded
  export PORTCULLIS_UNRECORDED_BIN="$PWD/target/release/portcullis-unrecorded"
fi
cargo build --release -q -p portcullis --bin portcullis --example pg_compare
exec target/release/examples/pg_compare "$@"
