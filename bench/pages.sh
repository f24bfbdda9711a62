#!/usr/bin/env bash
# Times the pages over an existing data directory (issue 3: every page under 100 ms at 10 million spend logs).
#
#   bench/pages.sh <data-dir> [runs]
#
# Fill a directory first with `target/release/spendgate-bench --work <dir> query --logs 10000000` (its store is
# left in <dir>/query-data), then run this with <dir>/query-data. It starts `spendgate demo --no-traffic` over
# the store (release build), fetches each page once (the first fetch: nothing kept yet for its past days, see
# crates/store/src/sealed.rs), then `runs` times more (default 10), and prints the first, the median and the
# slowest total time of each, as curl measured them; then the same for the explorer
# API (grouped by team, model and user over 24h, 7d and 30d) with the store's admin token.
set -euo pipefail
data=${1:?usage: bench/pages.sh <data-dir> [runs]}
runs=${2:-10}
bin=${SPENDGATE_BIN:-target/release/spendgate}
port=${PAGES_PORT:-18931}
log=$(mktemp)
"$bin" demo --no-traffic --data-dir "$data" --listen "127.0.0.1:$port" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 600); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/overview" 2>/dev/null; then break; fi
  if ! kill -0 $pid 2>/dev/null; then cat "$log"; exit 1; fi
  sleep 0.1
done
pages=(
  "/overview"
  "/usage"
  "/usage?window=7d&group_by=model"
  "/usage?window=30d&group_by=team"
  "/usage?window=30d&group_by=user"
  "/usage?window=30d&group_by=key"
  "/usage?window=24h&group_by=user&team=team-07"
  "/usage?window=30d&team=team-03"
  "/usage?window=30d&team=team-03&group_by=user"
  "/usage?window=30d&user=user-0001&group_by=model"
  "/usage?window=30d&model=claude-3-5-haiku-latest&group_by=team"
  "/usage?window=30d&provider=openai&group_by=model"
  "/usage?window=30d&provider=anthropic&group_by=user"
  "/usage?window=7d&provider=openai&group_by=team"
  "/usage?window=30d&gateway=gateway-2&group_by=key"
  "/usage?window=mtd&gateway=gateway-1"
  "/usage?window=7d&model=claude-3-5-haiku-latest&group_by=user"
  "/usage?window=30d&workflow=team-00-search&group_by=user"
  "/history?view=activity"
  "/history?view=activity&window=7d"
)
# The JSON API needs the admin token even in demo; the store's directory holds it.
token=$(cat "$data/admin-token" 2>/dev/null || true)
# A request detail page: the newest spend log's.
id=$(curl -fsS -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/spend-logs?limit=1" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["items"][0]["id"])')
pages+=("/requests/$id")
for window in 24h 7d 30d; do
  for group in team model user; do
    pages+=("/api/v1/usage/explorer?group_by=$group&window=$window")
  done
done
printf '%-60s %10s %10s %10s\n' page "first ms" "p50 ms" "max ms"
for page in "${pages[@]}"; do
  url="http://127.0.0.1:$port$page"
  auth=()
  if [[ $page == /api/* ]]; then auth=(-H "Authorization: Bearer $token"); fi
  first=$(curl -fsS -o /dev/null -w '%{time_total}' "${auth[@]}" "$url")
  times=()
  for _ in $(seq 1 "$runs"); do
    times+=("$(curl -fsS -o /dev/null -w '%{time_total}' "${auth[@]}" "$url")")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v page="$page" -v first="$first" '
    { t[NR] = $1 * 1000 }
    END { printf "%-60s %10.1f %10.1f %10.1f\n", page, first * 1000, t[int((NR + 1) / 2)], t[NR] }'
done
