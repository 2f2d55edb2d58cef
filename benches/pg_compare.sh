#!/usr/bin/env bash
# PostgreSQL: direct vs PgBouncer (transaction pooling) vs Portcullis (recording on),
# alternating runs, ratios printed. Needs pgbench, psql, pgbouncer and PostgreSQL
# server binaries (see .ci/run for the Debian packages).
#   BENCH_SECONDS=10 BENCH_ROUNDS=3 BENCH_DURABILITY=batched benches/pg_compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p portcullis --bin portcullis --example pg_compare
exec target/release/examples/pg_compare "$@"
