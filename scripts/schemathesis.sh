#!/usr/bin/env bash
# Runs schemathesis (pinned in requirements-schemathesis.txt, installed in .venv-st) against /api/openapi.json of a
# real `spendgate serve`, once with the admin token and once with a team viewer token, with every check on. Fails
# when either run reports a failure: the document and the handlers must agree both ways (every request the
# document calls valid is accepted, every one it calls invalid is refused, every status and media type answered
# is documented).
#
#   scripts/schemathesis.sh [MAX_EXAMPLES]        default: 20 examples per operation and run
#
# Environment:
#   SPENDGATE_BIN       the binary to test (default target/debug/spendgate, built by `cargo build` when missing)
#   SCHEMATHESIS_SEED   the Hypothesis seed (default: a fixed one, so CI is repeatable; "random" draws one and
#                       prints it, to look further)
#
# The server runs with a fresh SQLite store in a temporary directory, on a free loopback port, and is stopped on
# exit whatever happens. The admin run goes first: it creates, changes and revokes what it likes. The viewer token
# is created after it, so that the admin run cannot revoke it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

MAX_EXAMPLES="${1:-20}"
BIN="${SPENDGATE_BIN:-target/debug/spendgate}"
SEED="${SCHEMATHESIS_SEED:-20261207}"
ST=.venv-st/bin/st

if [ ! -x "$ST" ]; then
  echo "schemathesis: $ST is missing; install it with:" >&2
  echo "  python3 -m venv .venv-st && .venv-st/bin/pip install -r requirements-schemathesis.txt" >&2
  exit 2
fi
for tool in curl python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "schemathesis: $tool is needed to start the server and create its tokens; install it" >&2
    exit 2
  fi
done
if [ ! -x "$BIN" ]; then
  echo "schemathesis: building $BIN"
  cargo build -q -p spendgate
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
admin_token="st-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
cat >"$work/spendgate.toml" <<EOF
listen = "127.0.0.1:$port"
data_dir = "$work/data"
gateway_name = "schemathesis"

# The built-in mock, serving OpenAI's catalog models under OpenAI's name.
[[providers]]
name = "openai"
kind = "mock"
catalog = true
EOF

SPENDGATE_ADMIN_TOKEN="$admin_token" "$BIN" serve --config "$work/spendgate.toml" >"$work/server.log" 2>&1 &
server_pid=$!
deadline=$((SECONDS + 60))
until curl -fsS "$base/healthz" >/dev/null 2>&1; do
  if ! kill -0 "$server_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    echo "schemathesis: spendgate serve did not come up on $base; its log:" >&2
    cat "$work/server.log" >&2
    exit 2
  fi
  sleep 0.2
done

seed_args=(--seed "$SEED")
if [ "$SEED" = "random" ]; then
  seed_args=()
fi

run() {
  local who="$1" token="$2"
  echo "schemathesis: $who token, $MAX_EXAMPLES examples per operation"
  # From the temporary directory, where schemathesis keeps its cache of failures, not in the repository.
  (cd "$work" && "$root/$ST" run "$base/api/openapi.json" --checks all --max-examples "$MAX_EXAMPLES" "${seed_args[@]}" \
    --request-timeout 30 --generation-database none -H "Authorization: Bearer $token" --no-color)
}

# Something to find: a key, a request it made (a spend log, rollups), and a parent and a child wallet, so that
# small ids name existing resources and the runs reach past the 404s.
api() {
  curl -fsS -X POST "$base$1" -H "Authorization: Bearer $admin_token" -H 'content-type: application/json' -d "$2"
}
key=$(api /api/v1/keys '{"user": "st-user", "team": "schemathesis"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
curl -fsS "$base/v1/chat/completions" -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -H 'x-spendgate-workflow: schemathesis' \
  -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}' >/dev/null
api /api/v1/wallets '{"scope": "org", "initial_balance": "100.00"}' >/dev/null
api /api/v1/wallets '{"scope": "team", "subject": "schemathesis"}' >/dev/null

status=0
run admin "$admin_token" || status=1

viewer=$(curl -fsS -X POST "$base/api/v1/viewer-tokens" -H "Authorization: Bearer $admin_token" \
  -H 'content-type: application/json' -d '{"team": "schemathesis"}' |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
run viewer "$viewer" || status=1

if [ "$status" -ne 0 ]; then
  echo "schemathesis: failures above (the server's log is below)" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
