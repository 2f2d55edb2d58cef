#!/usr/bin/env bash
# SSH: direct to sshd vs an OpenSSH jump host (ProxyJump) vs Portcullis (recording on:
# sled store, batched durability, asciicast files for terminals), alternating runs.
#   - throughput: `ssh HOST 'head -c BYTES /dev/zero'`, MB/s and ratios;
#   - keystroke echo through an interactive PTY shell (benches/ssh_echo.py drives the
#     real `ssh -tt`), p50/p99.
# Goals printed: portcullis >= 0.6x direct and >= 1.25x ProxyJump throughput; echo p50 <= 180 µs.
#
#   benches/ssh_compare.sh                                   # 1 GiB, 3 rounds, 2000 keys
#   BENCH_BYTES=$((256<<20)) BENCH_ROUNDS=1 BENCH_KEYS=500 benches/ssh_compare.sh   # quick
#
# Needs ssh, sshd (apt-get install -y openssh-client openssh-server) and python3.
# Everything listens on 127.0.0.1; nothing is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v ssh >/dev/null || { echo "ssh is not installed (apt-get install -y openssh-client)"; exit 1; }
[ -x "${SSHD:-/usr/sbin/sshd}" ] || { echo "sshd is not installed (apt-get install -y openssh-server)"; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed for the echo driver"; exit 1; }
# Two builds: together, the example's dev-dependencies would change the binary's features
# and force a second (thin-LTO) build of the gateway.
cargo build --release -q -p portcullis --bin portcullis
cargo build --release -q -p portcullis --example ssh_compare
exec target/release/examples/ssh_compare "$@"
