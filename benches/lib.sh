# Shared by the PostgreSQL bench scripts; sourced from the workspace root.

# Builds the gateway with the bench-discard-store feature (in its own target directory,
# target/bench-unrecorded, so that neither build invalidates the other and a repeated run
# rebuilds nothing), copies it to target/release/portcullis-unrecorded and exports
# PORTCULLIS_UNRECORDED_BIN for pg_compare.
build_unrecorded() {
  cargo build --release -q -p portcullis --bin portcullis --features bench-discard-store \
    --target-dir target/bench-unrecorded
  mkdir -p target/release
  cp target/bench-unrecorded/release/portcullis target/release/portcullis-unrecorded
  export PORTCULLIS_UNRECORDED_BIN="$PWD/target/release/portcullis-unrecorded"
}

# Builds the recorded gateway and pg_compare.
build_recorded() {
  cargo build --release -q -p portcullis --bin portcullis --example pg_compare
}

# The pid of the newest gateway pg_compare started from binary $1 (default: any binary
# named portcullis).
gateway_pid() {
  local pattern="[^ ]*portcullis"
  [ -n "${1:-}" ] && pattern=$(printf '%s' "$1" | sed 's/[.[\*^$]/\\&/g')
  pgrep -n -x -f "$pattern serve --config .*/bench\.toml" ||
    { echo "no gateway process found for ${1:-portcullis}" >&2; return 1; }
}
