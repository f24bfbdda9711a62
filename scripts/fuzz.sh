#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a set time and reports executions and crashes per target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]       default: 60 seconds each, every target
#
# Environment:
#   FUZZ_SANITIZER   cargo-fuzz sanitizer: none (default; spendgate forbids unsafe code) or address
#   FUZZ_JOBS        libFuzzer -fork workers per target (default 1 = one in-process fuzzer)
#   FUZZ_ARGS        extra libFuzzer flags, e.g. "-max_len=16384"
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). cargo-fuzz passes nightly-only rustc flags; on a stable
# toolchain the script sets RUSTC_BOOTSTRAP=1 so that stable rustc accepts them.
#
# Each target starts from the committed seeds (fuzz/seeds/<target>) plus its growing local corpus
# (fuzz/corpus/<target>, not committed). A crash leaves its input in fuzz/artifacts/<target>/ and makes the script
# exit 1 after all targets have run; reproduce with `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> <file>`.
set -uo pipefail

cd "$(dirname "$0")/../fuzz" || exit 2

SECONDS_EACH="${1:-60}"
shift || true
SANITIZER="${FUZZ_SANITIZER:-none}"
JOBS="${FUZZ_JOBS:-1}"
EXTRA="${FUZZ_ARGS:-}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(cargo fuzz list)
fi

echo "building ${TARGETS[*]} (sanitizer: $SANITIZER)"
for t in "${TARGETS[@]}"; do
    cargo fuzz build -s "$SANITIZER" "$t" || { echo "build of $t failed" >&2; exit 2; }
done

LOGDIR="$(pwd)/artifacts/logs"
mkdir -p "$LOGDIR"
failed=0
total_execs=0
summary=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    log="$LOGDIR/$t.log"
    before=$(find "artifacts/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
    echo "== $t: ${SECONDS_EACH}s"
    fork=()
    [ "$JOBS" -gt 1 ] && fork=("-fork=$JOBS" "-ignore_crashes=1")
    # shellcheck disable=SC2086
    cargo fuzz run -s "$SANITIZER" "$t" "corpus/$t" "${seeds[@]}" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        "${fork[@]}" $EXTRA >"$log" 2>&1
    rc=$?
    after=$(find "artifacts/$t" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
    crashes=$((after - before))
    # In-process runs end with "Done N runs"; fork mode prints "stat::number_of_executed_units" per job, and
    # "#N DONE" lines; take the largest executions count printed.
    execs=$( { grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$';
               grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+';
               grep -oE '^#[0-9]+' "$log" | tr -d '#'; } | sort -n | tail -1)
    execs=${execs:-0}
    total_execs=$((total_execs + execs))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        # libFuzzer stopped on something that left no artifact (or the build/run failed): count it as a failure.
        crashes=1
    fi
    if [ "$crashes" -gt 0 ]; then
        failed=1
        echo "   CRASH: see $log and fuzz/artifacts/$t/"
        grep -m5 -E "panicked at|ERROR: libFuzzer|SUMMARY" "$log" | sed 's/^/   /'
    fi
    line=$(printf '%-16s %12s executions %3s crashes  (%s s, exit %s)' "$t" "$execs" "$crashes" "$SECONDS_EACH" "$rc")
    echo "   $line"
    summary+=("$line")
done

echo
echo "fuzz summary ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
printf '%s\n' "${summary[@]}"
echo "total: $total_execs executions"
exit "$failed"
