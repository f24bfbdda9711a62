#!/usr/bin/env bash
# spendgate's benchmark harness (issue 9): builds spendgate and spendgate-bench, then measures every figure on
# loopback and prints a table; the results are written to bench/out/results.json. See docs/BENCHMARKS.md.
#
#   bench/run.sh           full run, release build (about 15 minutes on 2 cores; 10 million spend logs need ~3 GB)
#   bench/run.sh --short   a few seconds per figure on the debug build: checks that the harness works (CI)
#
# Any other arguments are passed to spendgate-bench (e.g. `bench/run.sh -- query --logs 1000000`).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
args=()
for a in "$@"; do
    case "$a" in
        --short) mode=short ;;
        --) ;;
        *) args+=("$a") ;;
    esac
done

if [ "$mode" = short ]; then
    cargo build --quiet -p spendgate -p spendgate-bench
    target=debug
    limit=600
else
    cargo build --quiet --release -p spendgate -p spendgate-bench
    target=release
    limit=5400
fi
dir="${CARGO_TARGET_DIR:-target}/$target"

commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit-dirty"
fi

# 1,000 concurrent streams need about 2,000 descriptors in each process.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p bench/out

flags=(--bin "$dir/spendgate" --work bench/out/work --out bench/out/results.json --commit "$commit")
if [ "$mode" = short ]; then
    flags+=(--short)
fi
# Bounded in time whatever happens; the harness kills the servers it started when it exits.
exec timeout --signal=INT --kill-after=30 "$limit" "$dir/spendgate-bench" "${flags[@]}" "${args[@]}"
