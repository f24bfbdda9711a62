#!/usr/bin/env bash
# Counts the instructions `spendgate serve` spends per request, under valgrind's callgrind: unlike a clock, the
# count does not move with what else a shared machine runs, so a change of a few percent shows
# (docs/BENCHMARKS.md, "Instructions per request").
#
#   bench/callgrind.sh <out-file> [requests] [stream]
#
# It starts the mock upstream and a gateway under callgrind with the load figure's setup (a virtual key, a hard
# monthly budget and a prepaid wallet for its team), sends 300 warm-up requests one at a time, zeroes the
# counts, sends `requests` more (default 2000; `stream` for streamed ones), and dumps the counts to
# `<out-file>.1`. Read them with `callgrind_annotate --inclusive=yes <out-file>.1`. Requests one at a time
# make small writer batches (3-4 events), as a gateway has at moderate rates. `CALLGRIND_PROMPT_BYTES=N` appends
# about N bytes of text to the user message (an agent's long context; the default prompt is ~300 bytes).
set -euo pipefail
out=${1:?usage: bench/callgrind.sh <out-file> [requests] [stream]}
requests=${2:-2000}
stream=false
if [ "${3:-}" = stream ]; then stream=true; fi
bin=${SPENDGATE_BIN:-target/release/spendgate}
up=127.0.0.1:${CALLGRIND_UPSTREAM_PORT:-38111}
gw=127.0.0.1:${CALLGRIND_GATEWAY_PORT:-38112}
token=sgadm-callgrind-0123456789abcdef
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" mock-upstream --listen "$up" >"$work/upstream.log" 2>&1 &
pids+=($!)
key=$(RUST_LOG=warn "$bin" keys create --user bench-load --team bench --data-dir "$work/data")
printf '[limits]\nmax_streams_per_key = 100000\n[[providers]]\nname = "openai"\nkind = "openai"\nbase_url = "http://%s/v1"\ncatalog = true\n' \
  "$up" >"$work/gateway.toml"
SPENDGATE_ADMIN_TOKEN=$token valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve \
  --config "$work/gateway.toml" --data-dir "$work/data" --listen "$gw" --gateway-name bench-gateway \
  >"$work/gateway.log" 2>&1 &
gateway=$!
pids+=($gateway)
for _ in $(seq 1 600); do
  if curl -fsS -o /dev/null "http://$gw/overview" -H "Authorization: Bearer $token" 2>/dev/null; then break; fi
  if ! kill -0 "$gateway" 2>/dev/null; then cat "$work/gateway.log"; exit 1; fi
  sleep 0.2
done
api() {
  curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $token" -H 'content-type: application/json' \
    -d "$2" "http://$gw/api/v1/$1"
}
api budgets '{"scope":"team","subject":"bench","period":"month","amount":"1000000","hard_limit":true}'
api wallets '{"scope":"team","subject":"bench","initial_balance":"1000000"}'

# One keep-alive connection, one request at a time; fails on any answer but 200.
send() {
  python3 - "$gw" "$key" "$1" "$stream" "${CALLGRIND_PROMPT_BYTES:-0}" <<'PY'
import http.client, json, sys
addr, key, n, stream = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "true"
ticket = "Summarise the attached ticket in two sentences and suggest a next step."
words = "The customer reports that exports time out after the upgrade; logs attached. "
ticket += (words * (int(sys.argv[5]) // len(words) + 1))[: int(sys.argv[5])]
body = {"model": "gpt-4o-mini", "max_tokens": 64, "messages": [
    {"role": "system", "content": "You are a concise support assistant."},
    {"role": "user", "content": ticket}]}
if stream:
    body.update(stream=True, stream_options={"include_usage": True})
host, port = addr.split(":")
conn = http.client.HTTPConnection(host, int(port))
for _ in range(n):
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                 headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"the gateway answered {r.status}")
PY
}
send 300
callgrind_control -z "$gateway" >/dev/null 2>&1
send "$requests"
callgrind_control -d "$gateway" >/dev/null 2>&1
echo "$requests requests; counts in $out.1"
