#!/usr/bin/env bash
# Jaeger all-in-one (v2, memory storage) for local runs and CI, built from its Go module (there is
# no Docker and no release download here): OTLP/HTTP on 127.0.0.1:4318, the query UI/API on :16686,
# nothing else (a config of our own: loopback only, no Thrift/Zipkin receivers, no self-metrics port).
#   scripts/services/jaeger.sh start|stop|status|wait|fetch
#     fetch   only build the binary (first time: a few CPU-minutes, then cached), start nothing
#   start, stop and fetch hold $CHATIFY_CACHE/locks/jaeger.lock: a concurrent start waits, then finds
#   jaeger running (start is idempotent).
# Env: CHATIFY_JAEGER_VERSION (1.76.0), CHATIFY_JAEGER_OTLP_PORT (4318), CHATIFY_JAEGER_QUERY_PORT
#      (16686), CHATIFY_JAEGER_QUERY_GRPC_PORT (16685), CHATIFY_JAEGER_MAX_TRACES (20000, kept in
#      memory), CHATIFY_JAEGER_WAIT_TIMEOUT (30 s), CHATIFY_JAEGER_STOP_TIMEOUT (10 s), CHATIFY_CACHE.
set -euo pipefail
SERVICE=jaeger
source "$(dirname "$0")/lib.sh"

VERSION="${CHATIFY_JAEGER_VERSION:-1.76.0}"
OTLP_PORT="${CHATIFY_JAEGER_OTLP_PORT:-4318}"
QUERY_PORT="${CHATIFY_JAEGER_QUERY_PORT:-16686}"
QUERY_GRPC_PORT="${CHATIFY_JAEGER_QUERY_GRPC_PORT:-16685}"
MAX_TRACES="${CHATIFY_JAEGER_MAX_TRACES:-20000}"
WAIT_TIMEOUT="${CHATIFY_JAEGER_WAIT_TIMEOUT:-30}"
PIDFILE="$(svc_pidfile "$SERVICE")"
LOGFILE="$(svc_logfile "$SERVICE")"
CONFIG="$CACHE/conf/jaeger/config.yaml"
LIB="$CACHE/lib/jaeger-$VERSION"
BIN="$LIB/jaeger"
MARKER="$BIN"  # our jaeger's command line names the cached binary; a reused pid will not
export WAIT_LOG="$LOGFILE" WAIT_PIDFILE="$PIDFILE"

# ensure_binary: `go get -tool` in a throwaway tool module pins Jaeger and its whole dependency
# graph (go.sum), then `go build` makes one static binary, swapped in only once complete.
ensure_binary() {
  [ -x "$BIN" ] && return 0
  command -v go >/dev/null 2>&1 || die "go (1.24+) is required to build jaeger $VERSION"
  local tool="$CACHE/tmp/jaeger-tool-$VERSION" start
  start="$(now_ms)"
  log "building jaeger $VERSION from its Go module (first time only; a few CPU-minutes)"
  rm -rf "$tool"
  mkdir -p "$tool" "$LIB"
  (
    cd "$tool"
    go mod init chatify.local/jaeger-tool >/dev/null 2>&1
    go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@v$VERSION"
    go build -trimpath -o "$BIN.new" github.com/jaegertracing/jaeger/cmd/jaeger
  ) >>"$LOGFILE" 2>&1 || {
    log "ERROR: building jaeger failed; last lines of $LOGFILE:"
    tail -n 30 "$LOGFILE" | sed 's/^/    /' >&2
    return 1
  }
  mv -f "$BIN.new" "$BIN"
  rm -rf "$tool"
  log "built $BIN ($(du -h "$BIN" | cut -f1)) in $(( ($(now_ms) - start) / 1000 ))s"
}

# write_config: the all-in-one's pipeline (OTLP/HTTP in, memory storage, query API), every port on
# 127.0.0.1 (Jaeger's own default binds the query ports on every interface and opens ten others).
write_config() {
  mkdir -p "$(dirname "$CONFIG")"
  cat >"$CONFIG" <<EOF
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: $MAX_TRACES
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:$QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$QUERY_GRPC_PORT
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$OTLP_PORT
processors:
  batch:
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
EOF
}

ready() { curl -sf "http://127.0.0.1:$QUERY_PORT/api/services" >/dev/null; }

cmd_start() {
  local pid
  if pid="$(pid_alive "$PIDFILE" "$MARKER")"; then
    log "already running (pid $pid, OTLP/HTTP 127.0.0.1:$OTLP_PORT, query 127.0.0.1:$QUERY_PORT)"
    return 0
  fi
  clear_stale_pidfile "$PIDFILE" "$MARKER"
  ensure_binary
  local port
  for port in "$OTLP_PORT" "$QUERY_PORT" "$QUERY_GRPC_PORT"; do
    port_in_use "$port" && die "port $port on 127.0.0.1 is taken by another process; set CHATIFY_JAEGER_*_PORT"
  done
  log "starting jaeger $VERSION: OTLP/HTTP 127.0.0.1:$OTLP_PORT, query 127.0.0.1:$QUERY_PORT (log $LOGFILE)"
  write_config
  spawn_daemon "$PIDFILE" "$LOGFILE" "$BIN" --config "$CONFIG"
  cmd_wait
}

cmd_wait() {
  require_running "$PIDFILE" "$MARKER"
  wait_for "jaeger query API on 127.0.0.1:$QUERY_PORT" "$WAIT_TIMEOUT" ready
}

cmd_status() {
  local pid
  if pid="$(pid_alive "$PIDFILE" "$MARKER")"; then
    if ready; then
      log "running (pid $pid, OTLP/HTTP 127.0.0.1:$OTLP_PORT, query 127.0.0.1:$QUERY_PORT answers)"
    else
      log "running (pid $pid) but the query API does not answer yet"
    fi
    return 0
  fi
  log "not running"
  return 1
}

case "${1:-}" in
  # start, stop and fetch hold the service lock (svc_lock in lib.sh) until the script exits
  start) svc_lock; cmd_start ;;
  stop) svc_lock; stop_pidfile "$PIDFILE" "${CHATIFY_JAEGER_STOP_TIMEOUT:-10}" "$MARKER" ;;
  status) cmd_status ;;
  wait) cmd_wait ;;
  fetch) svc_lock; ensure_binary ;;
  *) usage_main "$0" ;;
esac
