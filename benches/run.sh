#!/usr/bin/env bash
# Build release binaries and run the side-by-side benchmark (see docs/benchmarks.md).
# Usage: benches/run.sh [postern-bench options], e.g.
#   benches/run.sh                                   # compare, crl, idle (about 15 minutes)
#   benches/run.sh --sections profile                # callgrind instruction counts
#   benches/run.sh --quick                           # smoke run, under a minute
# Needs root (Postfix), and postfix, openssl, util-linux (prlimit); valgrind for profiles.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:/usr/sbin:/sbin"
cargo build --release --locked -p postern-gateway -p postern-bench
target=${CARGO_TARGET_DIR:-$root/target}
exec "$target/release/postern-bench" --gateway-bin "$target/release/postern-gateway" "$@"
