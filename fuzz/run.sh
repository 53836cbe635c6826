#!/usr/bin/env bash
# Runs drp's fuzz targets with cargo-fuzz (libFuzzer), each for SECONDS (default 30), seeded
# from fuzz/seeds/TARGET. Exits non-zero at the first crash, with the input that crashed in
# TARGET_DIR/fuzz/artifacts/TARGET/ (reproduce: fuzz/run.sh --repro TARGET FILE).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     every target (plan condition manifest alert_body)
#   fuzz/run.sh --repro TARGET FILE       run one input again
#
# The toolchain here is stable: cargo-fuzz needs nightly-only compiler flags (sanitizer
# coverage, -Zsanitizer), which RUSTC_BOOTSTRAP=1 unlocks on a stable rustc. The build goes to
# $CARGO_TARGET_DIR/fuzz (default: target/fuzz of the repository); the corpus each run grows is
# kept there too (corpus/TARGET), not in the repository.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"
all_targets=(plan condition manifest alert_body)
target_dir=${CARGO_TARGET_DIR:-$PWD/../target}/fuzz
export RUSTC_BOOTSTRAP=1
# Release with debug assertions and overflow checks (cargo-fuzz's default), AddressSanitizer.
# DRP_FUZZ_PROFILE=dev builds unoptimised instead: a few times faster to build, slower to
# run — what CI's short smoke run wants; long runs keep the default.
fuzz_flags=(--target-dir "$target_dir")
if [[ ${DRP_FUZZ_PROFILE:-release} == dev ]]; then
    fuzz_flags+=(--dev)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "error: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
    exit 2
fi

if [[ ${1:-} == --repro ]]; then
    [[ $# -eq 3 ]] || { echo "usage: $0 --repro TARGET FILE" >&2; exit 2; }
    exec cargo fuzz run "${fuzz_flags[@]}" "$2" "$3"
fi

seconds=${1:-30}
shift || true
targets=("$@")
((${#targets[@]} > 0)) || targets=("${all_targets[@]}")

cargo fuzz build "${fuzz_flags[@]}"
for target in "${targets[@]}"; do
    corpus=$target_dir/corpus/$target
    artifacts=$target_dir/artifacts/$target
    mkdir -p "$corpus" "$artifacts"
    log=$target_dir/$target.log
    echo "fuzz $target for ${seconds}s (corpus $corpus, seeds fuzz/seeds/$target)"
    # -timeout: an input that takes 10 s is a hang, reported like a crash.
    if ! cargo fuzz run "${fuzz_flags[@]}" "$target" "$corpus" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "error: fuzz target $target failed; the input is in $artifacts/" >&2
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz $target: ok, $runs executions in ${seconds}s, corpus $(find "$corpus" -type f | wc -l) inputs"
done
