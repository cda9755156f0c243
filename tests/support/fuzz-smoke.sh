#!/usr/bin/env bash
# The short fuzz run: builds every target of fuzz/ with the stable toolchain and runs each
# one for FUZZ_SECONDS (default 20) over its committed corpus (fuzz/seeds/<target>) plus
# whatever new inputs libFuzzer derives from it. Any crash, panic, failed assertion or
# input that takes longer than 10 s fails the run; the input is kept under
# $FUZZ_ARTIFACTS/<target>/ and printed. New inputs go to a temporary directory, never
# into the repository. The longer run is described in docs/security.md.
#
# Usage: tests/support/fuzz-smoke.sh [target...]     (default: every target)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/postern
seconds=${FUZZ_SECONDS:-20}
artifacts=${FUZZ_ARTIFACTS:-$cache/fuzz-artifacts}
tools=$cache/tools
export PATH="$tools/bin:$HOME/.cargo/bin:$PATH"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz into $tools (once)"
    # A debug build of the tool compiles in about half the time and runs fast enough.
    cargo install cargo-fuzz --locked --debug --root "$tools"
fi

# libfuzzer-sys compiles libFuzzer itself (C++).
if ! command -v c++ >/dev/null 2>&1; then
    echo "== installing g++ (libFuzzer is C++)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++
fi

# libFuzzer's instrumentation needs unstable compiler flags; the stable compiler accepts
# them with RUSTC_BOOTSTRAP. No sanitizer: the code under test forbids `unsafe`, and
# panics, overflows (debug assertions are on) and hangs are what the run looks for.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$cache/fuzz-target}
cd "$root/fuzz"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

# Development profile (debug assertions, no optimisation): the targets pull in the whole
# gateway, and an optimised instrumented build of it and its dependencies is the slowest
# step of a fresh CI run; for a short smoke run, compile time matters more than speed.
# The longer run (docs/security.md) uses the default optimised build.
profile=(--dev)
start=$(date +%s)
cargo fuzz build "${profile[@]}" -s none
# fuzz/Cargo.lock is committed. When the gateway gained a dependency since, cargo had to
# resolve it now: say so loudly (the lockfile should be updated and committed).
if ! git -C "$root" diff --quiet -- fuzz/Cargo.lock 2>/dev/null; then
    echo "!! fuzz/Cargo.lock was out of date and has been updated by this build; commit it:" >&2
    git -C "$root" diff --stat -- fuzz/Cargo.lock >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
    seeds=$root/fuzz/seeds/$t
    if [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
        echo "fuzz target $t has no committed corpus in fuzz/seeds/$t" >&2
        exit 1
    fi
    mkdir -p "$work/$t" "$artifacts/$t"
    echo "== fuzz $t: ${seconds}s over fuzz/seeds/$t ($(ls "$seeds" | wc -l) inputs)"
    if ! cargo fuzz run "${profile[@]}" -s none "$t" "$work/$t" "$seeds" -- \
        -max_total_time="$seconds" -timeout=10 \
        -artifact_prefix="$artifacts/$t/" -print_final_stats=1 >"$work/$t.log" 2>&1; then
        tail -n 60 "$work/$t.log" >&2
        echo "fuzz target $t FAILED; reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev -s none $t $artifacts/$t/<file>" >&2
        exit 1
    fi
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+.*DONE' "$work/$t.log" || true
done
echo "== fuzz smoke run: ${#targets[@]} targets, no crash, $(($(date +%s) - start))s"
