#!/usr/bin/env bash
# Fuzzes poolrelay's parsers and its inbound session with cargo-fuzz (libFuzzer), outside
# .ci/run. Installs cargo-fuzz if missing; needs the nightly toolchain (rustup toolchain install
# nightly). Runs every target for MINUTES minutes (default 10), two at a time, then minimizes
# each corpus into fuzz/corpus/TARGET (kept in the repository). Crashes land in
# fuzz/artifacts/TARGET; the run of each target is logged to fuzz/logs/TARGET.log.
# Usage: scripts/fuzz.sh [MINUTES] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
minutes="${1:-10}"
shift || true
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
cargo +nightly fuzz build
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
mkdir -p logs corpus
run() {
    local target="$1" minutes="$2"
    mkdir -p "corpus/$target"
    echo "fuzzing $target for $minutes min"
    cargo +nightly fuzz run "$target" "corpus/$target" -- \
        -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -print_final_stats=1 \
        >"logs/$target.log" 2>&1 || echo "$target: FOUND SOMETHING (see fuzz/logs/$target.log)"
    tail -n 12 "logs/$target.log" | grep -E "stat::number_of_executed_units|stat::new_units_added|Done|SUMMARY" || true
}
export -f run
printf '%s\n' "${targets[@]}" | xargs -P 2 -I{} bash -c "run {} $minutes"
for target in "${targets[@]}"; do
    cargo +nightly fuzz cmin "$target" "corpus/$target" >/dev/null 2>&1 || true
done
