#!/usr/bin/env bash
# Where the added latency's tail waits: records the scheduler (`perf sched record`, system-wide) during the
# load figure's fixed-rate phase and prints, for the gateway, the upstream and the load generator, how long
# their threads waited between being woken and running ("scheduling delay"), and for the gateway's long waits
# what ran on that CPU meanwhile (docs/BENCHMARKS.md, "Where the tail waits").
#
#   bench/sched.sh <out-dir> [start-seconds] [seconds]
#
# It runs `spendgate-bench load` (binaries from `cargo build --release -p spendgate -p spendgate-bench`;
# SPENDGATE_BIN and SPENDGATE_BENCH_BIN override them), starts recording `start-seconds` (default 24) after the
# run starts, which is in the non-streaming 500 rps phase, for `seconds` (default 18: the rest of it and most of
# the 1,000 rps phase), and leaves the load run's table, the analysis and perf's text in `<out-dir>`. Needs
# root (or perf_event_paranoid <= -1) for the scheduler's tracepoints, perf, and python3.
set -euo pipefail
out=${1:?usage: bench/sched.sh <out-dir> [start-seconds] [seconds]}
pre=${2:-24}
dur=${3:-18}
bin=${SPENDGATE_BIN:-target/release/spendgate}
bench=${SPENDGATE_BENCH_BIN:-target/release/spendgate-bench}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
"$bench" --bin "$bin" --work "$out/work" --out "$out/load.json" load >"$out/load.txt" 2>&1 &
load=$!
trap 'kill "$load" 2>/dev/null || true' EXIT
sleep "$pre"
# The load run's two servers, told apart by their command lines.
upstream='' gateway=''
for pid in $(pgrep -P "$load"); do
  case "$(tr '\0' ' ' <"/proc/$pid/cmdline")" in
    *mock-upstream*) upstream=$pid ;;
    *serve*) gateway=$pid ;;
  esac
done
if [ -z "$upstream" ] || [ -z "$gateway" ]; then
  echo "bench/sched.sh: the load run's servers were not running after ${pre}s; see $out/load.txt" >&2
  exit 1
fi
perf sched record -a -o "$out/sched.data" -- sleep "$dur" >"$out/record.txt" 2>&1
wait "$load"
trap - EXIT
perf sched timehist -i "$out/sched.data" >"$out/timehist.txt" 2>/dev/null
# The recording is large (~50 MB); SCHED_KEEP=1 keeps it for `perf sched timehist --state` and the like.
if [ -z "${SCHED_KEEP:-}" ]; then rm -f "$out/sched.data"; fi
python3 "$here/sched_delays.py" "$out/timehist.txt" gateway="$gateway" upstream="$upstream" \
  load-generator="$load" | tee "$out/delays.txt"
# The table is printed as it fills; its last rows are the final ones.
grep -E 'non-streaming @ (500|1000) rps p99' "$out/load.txt" | tail -n 2
