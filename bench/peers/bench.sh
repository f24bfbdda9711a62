#!/usr/bin/env bash
# Peer benchmark: a zero-delay OpenAI-compatible upstream (nginx), measured directly and through each
# gateway in $GATEWAYS (adapters in gateways/NAME.sh), one after the other on the same machine.
# Prints a table and writes JSON under the temp dir. See README.md.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_TMP=${BENCH_TMP:-${TMPDIR:-/tmp}/peers-bench}
RUN=${RUN:-$BENCH_TMP/run-$(date +%Y%m%d-%H%M%S)}
GATEWAYS=${GATEWAYS:-litellm}
DURATION=${DURATION:-15}          # seconds per measured run
CONNS=${CONNS:-32}                # connections for the max-rate run
THREADS=${THREADS:-2}             # wrk threads
RATES=${RATES:-${RATE:-25}}        # requests/s of the fixed-rate latency runs, space-separated (same for every target)
RATE_CONNS=${RATE_CONNS:-32}      # connections for the fixed-rate run
WARMUP=${WARMUP:-10}              # seconds of unmeasured traffic before a target's runs
COOLDOWN=${COOLDOWN:-3}           # seconds between runs
STREAM=${STREAM:-0}               # 1: also measure SSE streaming (direct-stream, NAME-stream)
UPSTREAM_PORT=${UPSTREAM_PORT:-18080}
UPSTREAM_TLS=${UPSTREAM_TLS:-0}   # 1: gateways reach the upstream over HTTPS (the direct targets stay plain)
UPSTREAM_TLS_PORT=${UPSTREAM_TLS_PORT:-18443}
# The test CA and the server certificate it signed (names localhost and 127.0.0.1), for UPSTREAM_TLS=1.
UPSTREAM_CERT_DIR=${UPSTREAM_CERT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../tests/fixtures/tls" 2>/dev/null && pwd)}
LOAD_MAX=${LOAD_MAX:-1.5}         # wait until the 1-min load average is below this ...
LOAD_WAIT=${LOAD_WAIT:-900}       # ... for at most this many seconds in all (over every target) ...
LOAD_STEP=${LOAD_STEP:-30}        # ... checking this often
OHA=${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}

STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
export BENCH_TMP RUN HERE
mkdir -p "$RUN/pids" "$RUN/nginx-tmp" "$RUN/out"
. "$HERE/lib.sh"
for gw in $GATEWAYS; do
  [ -f "$HERE/gateways/$gw.sh" ] || die "no adapter gateways/$gw.sh"
  . "$HERE/gateways/$gw.sh"
done

STARTED_GWS=""
cleanup() {
  local gw
  for gw in $STARTED_GWS; do "${gw}_stop"; done
  STARTED_GWS=""
  stop_all
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools ----------------------------------------------------------------------------------
command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
for t in curl jq python3 ss; do command -v $t >/dev/null || die "$t not found"; done
if ! command -v nginx >/dev/null; then
  log "nginx missing: apt-get install -y nginx"
  DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >"$RUN/apt-nginx.log" 2>&1 || die "could not install nginx"
fi
if [ -x "$OHA" ]; then
  RATE_TOOL="oha"
else
  RATE_TOOL="wrk-paced"
  log "oha not found (cargo install oha): fixed-rate runs fall back to wrk with a per-connection delay"
fi

# ---- upstream -------------------------------------------------------------------------------
port_free "$UPSTREAM_PORT" || die "port $UPSTREAM_PORT is busy (set UPSTREAM_PORT)"
TLS_LISTEN=""
if [ "$UPSTREAM_TLS" = 1 ]; then
  [ -f "$UPSTREAM_CERT_DIR/server.crt" ] || die "UPSTREAM_TLS=1: no certificate in UPSTREAM_CERT_DIR=$UPSTREAM_CERT_DIR"
  port_free "$UPSTREAM_TLS_PORT" || die "port $UPSTREAM_TLS_PORT is busy (set UPSTREAM_TLS_PORT)"
  TLS_LISTEN="        listen 127.0.0.1:$UPSTREAM_TLS_PORT ssl backlog=4096;
        ssl_certificate $UPSTREAM_CERT_DIR/server.crt;
        ssl_certificate_key $UPSTREAM_CERT_DIR/server.key;
        ssl_session_cache shared:peers:10m;"
fi
sed -e "s#@RUN@#$RUN#g" -e "s#@PORT@#$UPSTREAM_PORT#g" "$HERE/nginx.conf.in" |
  awk -v tls="$TLS_LISTEN" '$1 == "@TLS_LISTEN@" {print tls; next} {print}' >"$RUN/nginx.conf"
start_bg nginx "$RUN/nginx.out" nginx -p "$RUN" -c "$RUN/nginx.conf" -e "$RUN/nginx-error.log"
# The direct targets are measured over plain HTTP; gateways reach UPSTREAM_URL, over TLS with UPSTREAM_TLS=1,
# trusting the test CA through the variables their TLS stacks read (rustls-native-certs and OpenSSL:
# SSL_CERT_FILE; Node: NODE_EXTRA_CA_CERTS; Python requests: REQUESTS_CA_BUNDLE).
UPSTREAM_PLAIN_URL=http://127.0.0.1:$UPSTREAM_PORT
UPSTREAM_URL=$UPSTREAM_PLAIN_URL
if [ "$UPSTREAM_TLS" = 1 ]; then
  UPSTREAM_URL=https://127.0.0.1:$UPSTREAM_TLS_PORT
  UPSTREAM_CA=$UPSTREAM_CERT_DIR/ca.crt
  export UPSTREAM_CA SSL_CERT_FILE=$UPSTREAM_CA NODE_EXTRA_CA_CERTS=$UPSTREAM_CA REQUESTS_CA_BUNDLE=$UPSTREAM_CA
fi
export UPSTREAM_URL UPSTREAM_PLAIN_URL UPSTREAM_TLS
wait_http "$UPSTREAM_PLAIN_URL/healthz" 20 nginx || die "nginx did not start: $(cat "$RUN/nginx.out")"
if [ "$UPSTREAM_TLS" = 1 ]; then
  curl -sf -o /dev/null --cacert "$UPSTREAM_CA" "$UPSTREAM_URL/healthz" || die "the upstream's TLS listener does not answer at $UPSTREAM_URL"
fi

BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}]}'

# hdr_args HEADERS : "-H LINE" for each non-empty line of HEADERS ("Name: value" per line); sets HDR_ARGS.
hdr_args() {
  HDR_ARGS=()
  local l
  while IFS= read -r l; do [ -n "$l" ] && HDR_ARGS+=(-H "$l"); done <<<"${1:-}"
}

# smoke URL KEY MODEL STREAM [HEADERS] : one request must answer 200 with usage.prompt_tokens 20.
smoke() {
  local url=$1 key=$2 model=$3 stream=$4 out body
  hdr_args "${5:-}"
  body="{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
  [ "$stream" = 1 ] && body+=',"stream":true,"stream_options":{"include_usage":true}'
  body+='}'
  out=$(curl -s --max-time 30 -w '\n%{http_code}' -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' "${HDR_ARGS[@]}" -d "$body" "$url")
  if [ "$(tail -1 <<<"$out")" != 200 ] || ! grep -q '"prompt_tokens": *20' <<<"$out"; then
    log "smoke test failed for $url ($model, stream=$stream):"; head -c 600 <<<"$out" >&2; echo >&2
    return 1
  fi
}

# ok_count FILE : 2xx responses in one wrk/oha JSON summary.
ok_count() {
  jq 'if .tool == "wrk" then .requests - .errors.status
      else ([.statusCodeDistribution | to_entries[] | select(.key | startswith("2")) | .value] | add // 0) end' "$1"
}

# run_rate RATE URL KEY MODEL STREAM OUT [HEADERS] : fixed-rate latency run.
run_rate() {
  local rate=$1 url=$2 key=$3 model=$4 stream=$5 out=$6 body
  hdr_args "${7:-}"
  body="{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello in one short sentence.\"}]"
  [ "$stream" = 1 ] && body+=',"stream":true,"stream_options":{"include_usage":true}'
  body+='}'
  if [ "$RATE_TOOL" = oha ]; then
    # --latency-correction: latency counts from when a request was due (no coordinated omission).
    "$OHA" --no-tui --output-format json -z "${DURATION}s" -c "$RATE_CONNS" -q "$rate" --latency-correction \
      -m POST -H "Authorization: Bearer $key" -H 'Content-Type: application/json' "${HDR_ARGS[@]}" -d "$body" "$url" \
      >"$out.raw" 2>"$out.err"
    jq '{tool: "oha", duration_s: .summary.total, requests: ([.statusCodeDistribution[]] | add // 0),
         rps: .summary.requestsPerSec,
         latency_ms: {mean: (.summary.average * 1000), p50: (.latencyPercentiles.p50 * 1000),
                      p90: (.latencyPercentiles.p90 * 1000), p99: (.latencyPercentiles.p99 * 1000),
                      p999: (.latencyPercentiles["p99.9"] * 1000), max: (.summary.slowest * 1000)},
         statusCodeDistribution, errorDistribution}' "$out.raw" >"$out" || { cat "$out.err" >&2; return 1; }
  else
    # wrk has no rate limit: each connection pauses so that all together send about RATE/s.
    local conns=$RATE_CONNS
    [ "$conns" -gt "$rate" ] && conns=$rate
    BENCH_KEY=$key BENCH_MODEL=$model BENCH_STREAM=$stream BENCH_HEADERS=${7:-} WRK_JSON_OUT=$out \
      WRK_DELAY_MS=$((1000 * conns / rate)) wrk -t1 -c"$conns" -d"${DURATION}s" -s "$HERE/post.lua" "$url" >"$out.txt"
  fi
}

# measure NAME URL KEY MODEL STREAM PGID [HEADERS] : warm up, then the max-rate and the fixed-rate runs.
# HEADERS: extra request headers, one "Name: value" per line (empty for every target but those whose adapter sets them).
OK_TOTAL=0
measure() {
  local name=$1 url=$2 key=$3 model=$4 stream=$5 pg=$6 hdrs=${7:-} o="$RUN/out/$1" sp c0 c1 t0 t1 n
  log "== $name: warm-up ${WARMUP}s"
  BENCH_KEY=$key BENCH_MODEL=$model BENCH_STREAM=$stream BENCH_HEADERS=$hdrs WRK_JSON_OUT=$o-warmup.json \
    wrk -t1 -c8 -d"${WARMUP}s" -s "$HERE/post.lua" "$url" >/dev/null
  OK_TOTAL=$((OK_TOTAL + $(ok_count "$o-warmup.json")))
  sleep "$COOLDOWN"

  log "== $name: max rate, $CONNS connections, ${DURATION}s (load average $(loadavg1))"
  echo "$(loadavg1)" >"$o-load-max"
  : >"$o-rss-max"
  sample_rss "$pg" "$o-rss-max" & sp=$!
  c0=$(cpu_ticks "$pg"); t0=$(date +%s.%N)
  BENCH_KEY=$key BENCH_MODEL=$model BENCH_STREAM=$stream BENCH_HEADERS=$hdrs WRK_JSON_OUT=$o-max.json \
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$HERE/post.lua" "$url" >"$o-max.txt"
  c1=$(cpu_ticks "$pg"); t1=$(date +%s.%N)
  kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null
  echo "$c0 $c1 $t0 $t1 $(getconf CLK_TCK)" >"$o-cpu-max"
  n=$(ok_count "$o-max.json"); OK_TOTAL=$((OK_TOTAL + n))
  log "   $(jq -r '"\(.rps) req/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms"' "$o-max.json")"
  sleep "$COOLDOWN"

  local rate
  for rate in $RATES; do
    log "== $name: fixed rate $rate/s via $RATE_TOOL, $RATE_CONNS connections, ${DURATION}s (load average $(loadavg1))"
    echo "$(loadavg1)" >"$o-load-rate$rate"
    : >"$o-rss-rate$rate"
    sample_rss "$pg" "$o-rss-rate$rate" & sp=$!
    c0=$(cpu_ticks "$pg"); t0=$(date +%s.%N)
    run_rate "$rate" "$url" "$key" "$model" "$stream" "$o-rate$rate.json" "$hdrs"
    c1=$(cpu_ticks "$pg"); t1=$(date +%s.%N)
    kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null
    echo "$c0 $c1 $t0 $t1 $(getconf CLK_TCK)" >"$o-cpu-rate$rate"
    n=$(ok_count "$o-rate$rate.json"); OK_TOTAL=$((OK_TOTAL + n))
    log "   $(jq -r '"\(.rps | floor) req/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms"' "$o-rate$rate.json")"
    sleep "$COOLDOWN"
  done
}

GATE_LOAD=""
LOAD_WAIT_LEFT=$LOAD_WAIT
gate() {
  local t0=$SECONDS
  wait_quiet "$LOAD_MAX" "$LOAD_WAIT_LEFT" "$LOAD_STEP"
  LOAD_WAIT_LEFT=$((LOAD_WAIT_LEFT - (SECONDS - t0)))
  [ "$LOAD_WAIT_LEFT" -lt 0 ] && LOAD_WAIT_LEFT=0
  GATE_LOAD="$GATE_LOAD $(loadavg1)"
}

# ---- direct ---------------------------------------------------------------------------------
NGINX_PG=$(pid_of nginx)
smoke "$UPSTREAM_PLAIN_URL/v1/chat/completions" none gpt-4o-mini 0 || die "upstream smoke test failed"
gate
measure direct "$UPSTREAM_PLAIN_URL/v1/chat/completions" none gpt-4o-mini 0 "$NGINX_PG"
[ "$STREAM" = 1 ] && measure direct-stream "$UPSTREAM_PLAIN_URL/sse/v1/chat/completions" none gpt-4o-mini 1 "$NGINX_PG"

# ---- gateways, one at a time ----------------------------------------------------------------
for gw in $GATEWAYS; do
  log "== starting gateway $gw"
  STARTED_GWS="$STARTED_GWS $gw"
  # An adapter may set GW_HEADERS (and GW_STREAM_HEADERS for the streaming target; default GW_HEADERS):
  # extra request headers, one "Name: value" per line. Empty for adapters that set none.
  GW_HEADERS=""; unset GW_STREAM_HEADERS
  "${gw}_start" || die "$gw failed to start"
  GW_STREAM_HEADERS=${GW_STREAM_HEADERS-$GW_HEADERS}
  OK_TOTAL=0
  smoke "$GW_URL/v1/chat/completions" "$GW_KEY" "$GW_MODEL" 0 "$GW_HEADERS" || die "$gw smoke test failed"
  OK_TOTAL=1
  if [ "$STREAM" = 1 ]; then
    smoke "$GW_URL/v1/chat/completions" "$GW_KEY" "$GW_STREAM_MODEL" 1 "$GW_STREAM_HEADERS" || die "$gw streaming smoke test failed"
    OK_TOTAL=2
  fi
  gate
  measure "$gw" "$GW_URL/v1/chat/completions" "$GW_KEY" "$GW_MODEL" 0 "$GW_PGID" "$GW_HEADERS"
  [ "$STREAM" = 1 ] && measure "$gw-stream" "$GW_URL/v1/chat/completions" "$GW_KEY" "$GW_STREAM_MODEL" 1 "$GW_PGID" "$GW_STREAM_HEADERS"
  log "== $gw: collecting facts ($OK_TOTAL 2xx responses sent through it)"
  "${gw}_facts" "$OK_TOTAL" >"$RUN/out/$gw-facts.json" || log "WARNING: ${gw}_facts failed"
  "${gw}_stop"
  STARTED_GWS=${STARTED_GWS/ $gw/}
done

# ---- report ---------------------------------------------------------------------------------
jq -n --arg started "$STARTED_AT" --arg gws "$GATEWAYS" --arg gate "$GATE_LOAD" --arg load_max "$LOAD_MAX" --arg host "$(uname -srm)" --argjson cpus "$(nproc)" \
  --arg nginx "$(nginx -v 2>&1 | sed 's#.*/##')" --arg wrk "$(wrk -v 2>&1 | head -1 | awk '{print $2}')" \
  --arg rate_tool "$RATE_TOOL" --arg oha "$([ "$RATE_TOOL" = oha ] && "$OHA" --version)" \
  --argjson duration "$DURATION" --argjson conns "$CONNS" --argjson threads "$THREADS" \
  --arg rates "$RATES" --argjson rate_conns "$RATE_CONNS" --argjson stream "$STREAM" --argjson upstream_tls "$UPSTREAM_TLS" \
  '{started: $started, finished: (now | todate), host: $host, cpus: $cpus, gateways: ($gws | split(" ")),
    load_gate: {max: $load_max, load1_at_gates: ($gate | split(" ") | map(select(. != "")))},
    params: {duration_s: $duration, conns: $conns, wrk_threads: $threads, rates: ($rates | split(" ") | map(select(. != "") | tonumber)), rate_conns: $rate_conns,
             rate_tool: $rate_tool, stream: ($stream == 1), upstream_tls: ($upstream_tls == 1)},
    tools: {nginx: $nginx, wrk: $wrk, oha: $oha}}' >"$RUN/meta.json"
python3 "$HERE/report.py" "$RUN" || die "report failed"
mkdir -p "$BENCH_TMP" && cp "$RUN/results.json" "$BENCH_TMP/latest.json"
log "JSON: $RUN/results.json (also $BENCH_TMP/latest.json)"
