# Gateway adapter: nginx as a bare reverse proxy (sourced by bench.sh; see README.md for the adapter contract).
# The reference for what forwarding alone costs on this harness: no auth, no parsing, no records.
# Two worker processes (a gateway may use both cores too), keep-alive connections to the upstream,
# request and response buffering as nginx ships them; streams unbuffered (proxy_buffering off on /sse).
#
# Env (optional): NGINXPROXY_PORT (default 18040), NGINXPROXY_WORKERS (default 2)
NGINXPROXY_PORT=${NGINXPROXY_PORT:-18040}
NGINXPROXY_WORKERS=${NGINXPROXY_WORKERS:-2}

nginxproxy_start() {
  port_free "$NGINXPROXY_PORT" || die "port $NGINXPROXY_PORT is busy (set NGINXPROXY_PORT)"
  local d=$RUN/nginxproxy
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<CONF
worker_processes $NGINXPROXY_WORKERS;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path       $d/tmp/proxy;
    fastcgi_temp_path     $d/tmp/fastcgi;
    uwsgi_temp_path       $d/tmp/uwsgi;
    scgi_temp_path        $d/tmp/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    upstream peers_upstream {
        server ${UPSTREAM_URL#*://};
        keepalive 256;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$NGINXPROXY_PORT backlog=4096;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        # With UPSTREAM_TLS=1: TLS to the upstream, its certificate verified, sessions reused.
        proxy_ssl_trusted_certificate ${UPSTREAM_CA:-/etc/ssl/certs/ca-certificates.crt};
        proxy_ssl_verify on;
        proxy_ssl_name localhost;
        proxy_ssl_session_reuse on;
        # The streaming target asks with x-peers-stream: 1 and is sent to the upstream's SSE location.
        location /v1/ {
            if (\$http_x_peers_stream) { rewrite ^/v1/(.*)\$ /sse/v1/\$1 break; }
            proxy_pass ${UPSTREAM_URL%%://*}://peers_upstream;
        }
        location /sse/ {
            proxy_buffering off;
            proxy_pass ${UPSTREAM_URL%%://*}://peers_upstream;
        }
    }
}
CONF
  start_bg nginxproxy "$d/out.log" nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log"
  GW_URL=http://127.0.0.1:$NGINXPROXY_PORT
  GW_PGID=$(pid_of nginxproxy)
  GW_KEY=none
  GW_MODEL=gpt-4o-mini
  GW_STREAM_MODEL=gpt-4o-mini
  GW_STREAM_HEADERS="x-peers-stream: 1"
  wait_http "$GW_URL/v1/chat/completions" 20 nginxproxy || die "nginx proxy did not start: $(cat "$d/out.log")"
  log "nginx $(nginx -v 2>&1 | sed 's/.*\///') bare reverse proxy ready on $GW_URL ($NGINXPROXY_WORKERS workers)"
}

nginxproxy_facts() {
  jq -n --arg version "$(nginx -v 2>&1 | sed 's/.*\///')" --argjson workers "$NGINXPROXY_WORKERS" --argjson ok "${1:-0}" \
    '{name: "nginxproxy", version: $version, workers: $workers, what: "bare reverse proxy: no auth, no parsing, no records", ok_responses_sent: $ok}'
}

nginxproxy_stop() { stop_bg nginxproxy; }
